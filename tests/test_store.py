"""The SQLite store through the Python API: run history, results, configs merged into
the run context, concurrency, liveness and damaged store files. A real store file in
each test's own FLOWSTAGE_HOME; no mocks."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from flowstage import run_workflow
from flowstage.core.errors import StoreError, UserError
from flowstage.core.plugin_manager import default_plugins
from flowstage.state.database import SCHEMA_VERSION
from flowstage.state.resources import apply_path
from flowstage.state.store import get_store


def workflow(name: str, target: str, annotations: dict | None = None) -> dict:
    return {
        "kind": "workflow",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {"stages": [{"name": "only", "target": target}]},
    }


def write_yaml(path: Path, *documents: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


def runs_of(name: str) -> list[dict]:
    rows, _total = get_store().list_runs(limit=0, workflow=name)
    return rows


def test_store_is_created_on_first_use_with_wal_and_schema_version(app_home: Path) -> None:
    db = app_home / "flowstage.db"
    assert not db.exists()
    run_workflow(workflow("first", "teststages.basic.one"))
    assert db.exists()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_python_runs_are_recorded_unless_record_false() -> None:
    wf = workflow("recorded", "teststages.basic.one")
    run = run_workflow(wf, return_run=True)
    run_workflow(wf, record=False)
    rows = runs_of("recorded")
    assert [r["id"] for r in rows] == [run.id]
    row = get_store().find_run(run.id)
    assert row["state"] == "finished" and row["source"] == "api"
    assert row["stages"]["only"]["state"] == "finished" and row["stages"]["only"]["attempts"] == 1
    assert get_store().load_result(row) == 1


def test_a_failed_run_keeps_error_traceback_and_stage_states() -> None:
    wf = {
        "metadata": {"name": "breaks"},
        "spec": {
            "stages": [
                {"name": "first", "target": "teststages.basic.one"},
                {
                    "name": "second",
                    "target": "teststages.basic.fails",
                    "depends_on": ["first"],
                    "retries": 1,
                    "retry_delay": "1ms",
                },
            ]
        },
    }
    run = run_workflow(wf, return_run=True)
    row = get_store().find_run(run.id)
    assert row["state"] == "failed"
    assert "this stage always fails" in row["error"]
    assert "ValueError" in row["traceback"]
    assert row["stages"]["first"]["state"] == "finished"
    assert row["stages"]["second"]["state"] == "failed"
    assert row["stages"]["second"]["attempts"] == 2
    with pytest.raises(UserError, match="has no result"):
        get_store().load_result(row)


def test_results_are_json_when_they_fit_else_pickled_else_explained(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = get_store()
    pair = store.find_run(
        run_workflow(workflow("pair", "teststages.state.pair"), return_run=True).id
    )
    assert pair["result_kind"] == "file"  # JSON would turn the tuple into a list
    assert store.load_result(pair) == (1, "two")

    monkeypatch.setenv("FLOWSTAGE__STORE__MAX_INLINE_RESULT", "100")
    small = run_workflow(
        workflow("counted", "teststages.state.numbers_up_to"), {"n": 5}, return_run=True
    )
    big = run_workflow(
        workflow("counted", "teststages.state.numbers_up_to"), {"n": 500}, return_run=True
    )
    store = get_store()
    assert store.find_run(small.id)["result_kind"] == "json"
    big_row = store.find_run(big.id)
    assert big_row["result_kind"] == "file"
    assert (Path(os.environ["FLOWSTAGE_HOME"]) / big_row["result"]).is_file()
    assert store.load_result(big_row) == list(range(500))

    monkeypatch.setenv("FLOWSTAGE__STORE__MAX_RESULT_SIZE", "1KiB")
    too_big = get_store().find_run(
        run_workflow(
            workflow("counted", "teststages.state.numbers_up_to"), {"n": 5000}, return_run=True
        ).id
    )
    assert too_big["result_kind"] == "missing" and "store.max_result_size" in too_big["result"]
    unpicklable = get_store().find_run(
        run_workflow(workflow("locked", "teststages.state.lock"), return_run=True).id
    )
    assert unpicklable["state"] == "finished"
    assert unpicklable["result_kind"] == "missing" and "cannot be pickled" in unpicklable["result"]
    with pytest.raises(UserError, match="cannot be pickled"):
        get_store().load_result(unpicklable)


def test_configs_by_annotation_and_name_merge_in_name_order_into_the_run_context(
    tmp_path: Path,
) -> None:
    write_yaml(
        tmp_path / "resources.yaml",
        workflow("nowcast_features", "teststages.state.config_dict", {"group": "nowcast"}),
        {
            "kind": "config",
            "metadata": {"name": "a_base"},
            "spec": {
                "selector": {"type": "annotation", "value": {"group": "nowcast"}},
                "data": {"study_identifier": "base", "data_config": {"n": 1, "city": "Oslo"}},
            },
        },
        {
            "kind": "config",
            "metadata": {"name": "b_by_name"},
            "spec": {
                "selector": {"type": "name", "value": "nowcast_features"},
                "data": {"study_identifier": "named", "data_config": {"n": 2}},
            },
        },
        {
            "kind": "config",
            "metadata": {"name": "c_other_group"},
            "spec": {
                "selector": {"type": "annotation", "value": {"group": "other"}},
                "data": {"unrelated": True},
            },
        },
    )
    apply_path(tmp_path / "resources.yaml", default_plugins())
    merged = run_workflow("nowcast_features")
    assert merged == {"study_identifier": "named", "data_config": {"n": 2, "city": "Oslo"}}
    # the config= mapping of run_workflow wins over every applied config
    assert run_workflow("nowcast_features", config={"data_config": {"city": "Bergen"}}) == {
        "study_identifier": "named",
        "data_config": {"n": 2, "city": "Bergen"},
    }
    # item access from a stage, for a workflow given as a mapping with the same name
    key_reader = workflow("nowcast_features", "teststages.state.config_key", {"group": "nowcast"})
    assert run_workflow(key_reader, {"key": "study_identifier"}) == "named"
    # a workflow the selectors do not match gets no config
    assert run_workflow(workflow("elsewhere", "teststages.state.config_dict")) == {}


def test_applied_workflows_come_before_shipped_ones_and_deleting_keeps_runs(
    tmp_path: Path, sample_installed: None
) -> None:
    from flowstage.state.resources import delete_resource, find_workflow

    plugins = default_plugins()
    assert [s.name for s in find_workflow("sample_squares", plugins).spec.stages] != ["only"]
    write_yaml(tmp_path / "wf.yaml", workflow("sample_squares", "teststages.basic.one"))
    apply_path(tmp_path / "wf.yaml", plugins)
    assert run_workflow("sample_squares") == 1
    delete_resource("workflow", "sample_squares")
    assert len(runs_of("sample_squares")) == 1  # the history stays
    assert [s.name for s in find_workflow("sample_squares", plugins).spec.stages] != ["only"]


CONCURRENT_SCRIPT = textwrap.dedent("""
    import asyncio, json, sys
    from pathlib import Path
    from flowstage import arun_workflow, create_executor
    from flowstage.state.resources import apply_path
    from flowstage.core.plugin_manager import default_plugins

    worker, folder = int(sys.argv[1]), Path(sys.argv[2])
    config = folder / f"config{worker}.yaml"
    wf = {
        "metadata": {"name": "concurrent"},
        "spec": {"stages": [{"name": "only", "target": "teststages.basic.one"}]},
    }

    async def main():
        with create_executor({"name": "local", "max_workers": 4}) as executor:
            runs = await asyncio.gather(
                *(arun_workflow(wf, executor=executor, return_run=True) for _ in range(50))
            )
        return runs

    config.write_text(
        f"kind: config\\nmetadata: {{name: config{worker}}}\\n"
        f"spec: {{data: {{worker: {worker}}}}}\\n"
    )
    apply_path(config, default_plugins())
    runs = asyncio.run(main())
    config.write_text(
        f"kind: config\\nmetadata: {{name: config{worker}}}\\n"
        f"spec: {{data: {{worker: {worker}, again: true}}}}\\n"
    )
    apply_path(config, default_plugins())
    print(json.dumps([[r.id, r.state] for r in runs]))
""")


def test_eight_processes_of_fifty_concurrent_runs_lose_no_record(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(CONCURRENT_SCRIPT)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(i), str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert "locked" not in err.lower() and "busy" not in err.lower(), err
    started = {
        run_id: state
        for out, _ in outputs
        for run_id, state in json.loads(out.strip().splitlines()[-1])
    }
    assert len(started) == 400 and set(started.values()) == {"finished"}
    rows = runs_of("concurrent")
    assert {r["id"]: r["state"] for r in rows} == started
    configs = get_store().list_resources("config")
    assert sorted(c["name"] for c in configs) == sorted(f"config{i}" for i in range(8))
    assert all(c["version"] == 2 for c in configs)


LONG_RUN_SCRIPT = textwrap.dedent("""
    from flowstage import run_workflow
    wf = {
        "metadata": {"name": "doomed"},
        "spec": {"stages": [{"name": "nap", "target": "teststages.state.sleepy"}]},
    }
    run_workflow(wf, {"seconds": 60})
""")


def test_a_run_whose_process_was_killed_shows_as_failed_with_the_reason() -> None:
    proc = subprocess.Popen([sys.executable, "-c", LONG_RUN_SCRIPT], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not runs_of("doomed"):
            assert time.monotonic() < deadline, "the run never showed up in the history"
            time.sleep(0.1)
        assert runs_of("doomed")[0]["state"] == "running"
        os.kill(proc.pid, signal.SIGKILL)
        time.sleep(0.2)  # not waited for yet: the process is a zombie, which counts as dead
        [row] = runs_of("doomed")
        assert row["state"] == "failed"
        detail = get_store().find_run(row["id"])
        assert f"pid {proc.pid}" in detail["error"] and "ended without finishing" in detail["error"]
        assert detail["stages"]["nap"]["state"] == "failed"
    finally:
        proc.kill()
        proc.wait()


def test_a_corrupt_store_is_an_error_naming_the_file(app_home: Path) -> None:
    db = app_home / "flowstage.db"
    db.write_bytes(b"this is not an SQLite database, it only has its name" * 100)
    with pytest.raises(StoreError, match="flowstage.db") as info:
        run_workflow(workflow("any", "teststages.basic.one"))
    assert str(db) in str(info.value) and "corrupt" in str(info.value)
    assert db.read_bytes().startswith(b"this is not")  # never silently re-created


def test_a_store_from_a_newer_flowstage_is_an_error_naming_the_file(app_home: Path) -> None:
    db = app_home / "flowstage.db"
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    with pytest.raises(StoreError, match="newer") as info:
        get_store().list_runs()
    assert str(db) in str(info.value)


def test_another_programs_sqlite_file_is_not_taken_over(app_home: Path) -> None:
    db = app_home / "flowstage.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(StoreError, match="not a flowstage store"):
        get_store().list_resources("workflow")


def test_listing_pages_through_a_big_history_quickly() -> None:
    store = get_store()
    store.list_runs()  # creates the store
    rows = [
        (f"run{i:06d}", f"wf{i % 3}", "finished", "api", "2026-01-01T00:00:00+00:00")
        for i in range(100_000)
    ]
    with store.write() as conn:
        conn.executemany(
            "INSERT INTO runs (id, workflow, state, source, created_at) VALUES (?, ?, ?, ?, ?)",
            rows,
        )
    start = time.perf_counter()
    page, total = store.list_runs(limit=50, offset=50)
    assert time.perf_counter() - start < 0.5
    assert total == 100_000
    assert [r["id"] for r in page[:2]] == ["run099949", "run099948"]
    only, count = store.list_runs(limit=10, workflow="wf1")
    assert count == 33_333 and {r["workflow"] for r in only} == {"wf1"}


def test_an_empty_store_file_is_migrated_to_the_current_schema(app_home: Path) -> None:
    db = app_home / "flowstage.db"
    db.touch()  # e.g. created by hand, or by an older flowstage before its first write
    assert get_store().list_runs() == ([], 0)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"resources", "runs", "meta"} <= tables


def test_a_run_on_another_host_without_heartbeat_is_presumed_dead() -> None:
    store = get_store()
    store.list_runs()  # creates the store
    stale, fresh = time.time() - 3600, time.time()
    with store.write() as conn:
        for run_id, beat in (("faraway_old", stale), ("faraway_new", fresh)):
            conn.execute(
                "INSERT INTO runs "
                "(id, workflow, state, source, created_at, host, pid, heartbeat_at) "
                "VALUES (?, 'remote', 'running', 'cli', '2026-01-01T00:00:00+00:00', "
                "'elsewhere', 4242, ?)",
                (run_id, beat),
            )
    states = {r["id"]: r["state"] for r in runs_of("remote")}
    assert states == {"faraway_old": "failed", "faraway_new": "running"}
    error = store.find_run("faraway_old")["error"]
    assert "pid 4242 on elsewhere" in error and "no heartbeat since" in error
