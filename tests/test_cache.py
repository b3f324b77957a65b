"""The stage cache (``cache:`` on a stage): hits skip calls on every executor, per item
in maps; code, config and input changes miss; expiry, corrupt entries, bad arguments;
``--no-cache`` / ``--refresh-cache``; ``flowstage cache ls|rm|clear``; S3 through moto."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowstage import run_workflow
from flowstage.cli.main import run_cli
from flowstage.core.errors import WorkflowError
from teststages.caching import calls

C = "teststages.caching."


def workflow(name: str, *stages: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "workflow", "metadata": {"name": name}, "spec": {"stages": list(stages)}}


def stage(name: str, target: str, *depends_on: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "target": C + target, "depends_on": list(depends_on), **extra}


def squares(cache: Any = True) -> dict[str, Any]:
    """numbers -> square (a map) -> total, the first two cached."""
    return workflow(
        "squares",
        stage("numbers", "numbers", cache=cache),
        stage("square", "square", "numbers", type="parameterized", cache=cache),
        stage("total", "total", "square"),
    )


def entry_files(home: Path) -> list[Path]:
    return sorted(p for p in (home / "artifacts" / ".flowstage-cache").glob("*/*") if p.is_file())


@pytest.fixture
def cache_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The cache's warnings, also after a CLI run in this process stopped the
    ``flowstage`` logger from propagating to the root logger, where caplog listens."""
    logger = logging.getLogger("flowstage.cache")
    logger.addHandler(caplog.handler)
    logger.propagate = False  # each record once, whatever the parent loggers do
    with caplog.at_level(logging.WARNING, logger="flowstage.cache"):
        yield caplog
    logger.propagate = True
    logger.removeHandler(caplog.handler)


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    folder = tmp_path / "marks"
    folder.mkdir()
    return folder


# -- hits and misses, on every executor ---------------------------------------------------


def test_second_run_takes_every_cached_stage_from_the_cache(executor, marks):
    run_input = {"marks": str(marks), "n": 4}
    first = run_workflow(squares(), run_input, executor=executor, return_run=True)
    assert first.state == "finished", first.error
    assert first.result == 14
    assert {s.state for s in first.stages.values()} == {"finished"}
    second = run_workflow(squares(), run_input, executor=executor, return_run=True)
    assert second.state == "finished", second.error
    assert second.result == 14
    assert second.stages["numbers"].state == "cached"
    assert second.stages["square"].state == "cached"
    assert second.stages["total"].state == "finished"  # not cached: it runs
    assert calls(marks, "numbers") == 1
    assert [calls(marks, f"square{i}") for i in range(4)] == [1, 1, 1, 1]


def test_a_map_calls_only_its_items_missing_from_the_cache(executor, marks):
    run_workflow(squares(), {"marks": str(marks), "n": 3}, executor=executor)
    run = run_workflow(squares(), {"marks": str(marks), "n": 5}, executor=executor, return_run=True)
    assert run.result == 0 + 1 + 4 + 9 + 16
    assert [calls(marks, f"square{i}") for i in range(5)] == [1, 1, 1, 1, 1]
    assert calls(marks, "numbers") == 2  # its input changed
    record = run.stages["square"]
    assert record.state == "finished"
    assert record.note == "3 of 5 item(s) taken from the cache"
    assert record.items_done == record.items_total == 5


def test_different_input_misses(local_executor, marks):
    run_workflow(squares(), {"marks": str(marks), "n": 2}, executor=local_executor)
    run = run_workflow(
        squares(), {"marks": str(marks), "n": 3}, executor=local_executor, return_run=True
    )
    assert run.stages["numbers"].state == "finished"
    assert calls(marks, "numbers") == 2


def test_stage_without_cache_always_runs(local_executor, marks):
    for _ in range(2):
        run_workflow(squares(cache=False), {"marks": str(marks), "n": 2}, executor=local_executor)
    assert calls(marks, "numbers") == 2


# -- what enters the key -----------------------------------------------------------------


def scaled(cache: Any = True) -> dict[str, Any]:
    return workflow("scaled", stage("scaled", "scaled", cache=cache))


def test_config_change_misses(local_executor, marks):
    run_input = {"marks": str(marks), "n": 3}
    assert run_workflow(scaled(), run_input, config={"factor": 2}, executor=local_executor) == 6
    assert run_workflow(scaled(), run_input, config={"factor": 2}, executor=local_executor) == 6
    assert calls(marks, "scaled") == 1
    assert run_workflow(scaled(), run_input, config={"factor": 5}, executor=local_executor) == 15
    assert calls(marks, "scaled") == 2


def test_key_without_config_ignores_config_changes(local_executor, marks):
    run_input = {"marks": str(marks), "n": 3}
    options = {"key": ["inputs", "code"]}
    run_workflow(scaled(options), run_input, config={"factor": 2}, executor=local_executor)
    stale = run_workflow(scaled(options), run_input, config={"factor": 5}, executor=local_executor)
    assert stale == 6  # the config is not in the key: the stored result is taken
    assert calls(marks, "scaled") == 1


def test_key_without_inputs_ignores_the_arguments(local_executor, marks):
    options = {"key": "code"}
    run_workflow(scaled(options), {"marks": str(marks), "n": 3}, executor=local_executor)
    assert run_workflow(scaled(options), {"marks": str(marks), "n": 4}) == 3
    assert calls(marks, "scaled") == 1


def test_unknown_key_part_names_file_stage_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    document = workflow("bad", stage("scaled", "scaled", cache={"key": ["inputs", "cod"]}))
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(WorkflowError) as info:
        run_workflow(str(path), {"marks": "x", "n": 1})
    message = str(info.value)
    assert str(path) in message and "stage 'scaled'" in message
    assert "cache.key.1" in message and "'cod'" in message and "'code'" in message


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ({"expire": "soon"}, "cache.expire"),
        ({"ttl": "1h"}, "unknown key 'ttl' under 'cache'"),
        ("yes", "cache"),
    ],
)
def test_bad_cache_options_are_validation_errors(value, found):
    with pytest.raises(WorkflowError, match=re.escape(found)):
        run_workflow(workflow("bad", stage("scaled", "scaled", cache=value)), {"n": 1})


def test_expired_entries_are_misses(local_executor, marks):
    run_input = {"marks": str(marks), "n": 3}
    options = {"expire": "300ms"}
    run_workflow(scaled(options), run_input, executor=local_executor)
    run_workflow(scaled(options), run_input, executor=local_executor)
    assert calls(marks, "scaled") == 1
    time.sleep(0.4)
    run = run_workflow(scaled(options), run_input, executor=local_executor, return_run=True)
    assert run.stages["scaled"].state == "finished"
    assert calls(marks, "scaled") == 2


def test_a_run_and_cache_ls_agree_on_expiry_after_expire_is_edited(local_executor, marks, capsys):
    """An entry keeps the expiry it was written with: a run after `expire` was edited
    takes it exactly when `cache ls` does not call it expired."""
    run_input = {"marks": str(marks), "n": 3}

    def expired_in_ls() -> bool:
        (row,) = cache_rows(capsys)
        return bool(row["expires"].endswith("(expired)"))

    run_workflow(scaled({"expire": "1h"}), run_input, executor=local_executor)
    time.sleep(0.2)
    assert not expired_in_ls()
    shortened = scaled({"expire": "100ms"})
    run = run_workflow(shortened, run_input, executor=local_executor, return_run=True)
    assert run.stages["scaled"].state == "cached" and calls(marks, "scaled") == 1
    assert run_cli(["cache", "clear", "--yes"]) == 0
    run_workflow(shortened, run_input, executor=local_executor)
    time.sleep(0.2)
    assert expired_in_ls()
    lengthened = scaled({"expire": "1h"})
    run = run_workflow(lengthened, run_input, executor=local_executor, return_run=True)
    assert run.stages["scaled"].state == "finished" and calls(marks, "scaled") == 3
    assert not expired_in_ls()  # the new entry, with the new expiry


CODE = """
import functools
import uuid
from pathlib import Path

FACTOR = {factor}


@functools.lru_cache  # the digest follows decorators to the function they wrap
def helper(x):
    return x * FACTOR + {offset}


def unrelated():
    return {unrelated}


def stage(marks, n):
    (Path(marks) / f"stage.{{uuid.uuid4().hex}}").touch()
    return helper(n)
"""


def test_editing_the_stage_code_or_a_helper_it_calls_misses(tmp_path, marks):
    module = f"editable_{uuid.uuid4().hex[:8]}"
    source = tmp_path / f"{module}.py"
    path = tmp_path / "edit.yaml"
    document = workflow("edit", {"name": "s", "target": f"{module}.stage", "cache": True})
    path.write_text(yaml.safe_dump(document))

    def run(**code: int) -> int:
        source.write_text(CODE.format(**{"factor": 2, "offset": 0, "unrelated": 0, **code}))
        command = [sys.executable, "-m", "flowstage", "run", str(path), "-q"]
        done = subprocess.run(
            [*command, "--marks", str(marks), "--n", "5"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return int(done.stdout)

    assert run() == 10
    assert run() == 10 and calls(marks, "stage") == 1
    assert run(unrelated=7) == 10 and calls(marks, "stage") == 1  # not used by the stage
    assert run(offset=1) == 11 and calls(marks, "stage") == 2  # a helper it calls changed
    assert run(offset=1, factor=3) == 16 and calls(marks, "stage") == 3  # a constant it uses


def test_argument_digests_do_not_change_between_processes():
    script = (
        "from flowstage.core.value_digest import value_digest; "
        "print(value_digest({'tags': {'oslo', 'lima', 'pune'}, 'n': 1}).hex(), "
        "value_digest(('a', {'b', 'c'}, object.__name__)).hex())"
    )
    seen = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(seen) == 1


# -- entries that cannot be used, values that cannot be keyed ---------------------------


def test_corrupt_or_cut_entries_are_misses_with_a_warning(
    local_executor, marks, app_home, cache_log, capsys
):
    run_input = {"marks": str(marks), "n": 3}
    run_workflow(squares(), run_input, executor=local_executor)
    files = entry_files(app_home)
    assert len(files) == 4  # numbers, and 3 items of square
    files[0].write_bytes(b"not a cache entry")
    files[1].write_bytes(files[1].read_bytes()[:-5])
    run = run_workflow(squares(), run_input, executor=local_executor, return_run=True)
    assert run.state == "finished" and run.result == 5
    corrupt = [r for r in cache_log.records if "corrupt" in r.getMessage()]
    assert len(corrupt) == 2
    assert sum(calls(marks, n) for n in ("numbers", "square0", "square1", "square2")) == 6
    # the entries were written again: a third run calls nothing
    again = run_workflow(squares(), run_input, executor=local_executor, return_run=True)
    assert again.stages["numbers"].state == again.stages["square"].state == "cached"
    assert sum(calls(marks, n) for n in ("numbers", "square0", "square1", "square2")) == 6
    files[0].write_bytes(b"not a cache entry")
    listed = {r["key"]: r for r in cache_rows(capsys)}  # (the CLI takes over the log)
    assert "it does not start like a flowstage cache entry" in listed[files[0].name]["corrupt"]
    assert "corrupt" not in listed[files[1].name]


def test_an_unusable_cache_store_warns_once_and_the_run_goes_on(
    local_executor, marks, app_home, cache_log
):
    (app_home / "artifacts").mkdir(parents=True, exist_ok=True)
    (app_home / "artifacts" / ".flowstage-cache").write_text("a file where the folder goes")
    for _ in range(2):
        result = run_workflow(squares(), {"marks": str(marks), "n": 3}, executor=local_executor)
        assert result == 5
    assert [calls(marks, f"square{i}") for i in range(3)] == [2, 2, 2]
    warnings = [r.getMessage() for r in cache_log.records]
    assert len(warnings) == 2  # once per run, not once per entry
    assert all("cannot be read (NotADirectoryError" in w for w in warnings)


def test_an_entry_that_cannot_be_read_is_a_miss_and_the_others_still_hit(
    local_executor, marks, app_home, cache_log, capsys
):
    run_input = {"marks": str(marks), "n": 3}
    run_workflow(squares(), run_input, executor=local_executor)
    # the entry of `numbers` (asked first) becomes a folder: reading it fails
    blocked = next(p for p in entry_files(app_home) if b'"stage": "numbers"' in p.read_bytes())
    blocked.unlink()
    blocked.mkdir()
    for _ in range(2):
        run = run_workflow(squares(), run_input, executor=local_executor, return_run=True)
        assert run.state == "finished" and run.result == 5
        assert run.stages["numbers"].state == "finished"
        assert run.stages["square"].state == "cached"  # the store was not set aside
    assert calls(marks, "numbers") == 3
    assert [calls(marks, f"square{i}") for i in range(3)] == [1, 1, 1]
    warnings = [r.getMessage() for r in cache_log.records]
    assert len(warnings) == 4  # per run: the read, and the write that cannot replace it
    assert f"{blocked.name} cannot be read (IsADirectoryError: Is a directory)" in warnings[0]
    assert "a miss" in warnings[0] and "not stored" in warnings[1]
    assert len(cache_rows(capsys)) == 3  # a folder in an entry's place is not listed


def test_an_argument_that_cannot_be_keyed_fails_naming_the_stage(local_executor, marks):
    document = workflow(
        "locks", stage("make", "make_lock"), stage("use", "use_lock", "make", cache=True)
    )
    run = run_workflow(document, {"marks": str(marks)}, executor=local_executor, return_run=True)
    assert run.state == "failed"
    assert "stage 'use'" in run.error
    assert "cache key" in run.error and "argument 0 (a lock)" in run.error
    assert "neither JSON nor picklable" in run.error


def test_a_result_that_cannot_be_stored_is_not_cached(local_executor, marks, cache_log):
    document = workflow(
        "unpicklable",
        stage("make", "make_unpicklable_result", cache=True),
        stage("describe", "describe", "make"),
    )
    for _ in range(2):
        assert run_workflow(document, {"marks": str(marks)}, executor=local_executor) == "lock"
    assert calls(marks, "unpicklable") == 2
    assert any("cannot be pickled" in r.getMessage() for r in cache_log.records)


def test_big_values_are_pickled_and_unpickled_off_the_event_loop(local_executor, marks):
    """In `flowstage serve` the event loop serves the API: the cache must not pickle,
    unpickle or digest a big value on it (stored, taken from the cache, keyed)."""
    document = workflow(
        "big",
        stage("big", "big_with_probe", cache=True),
        stage("size", "blob_size", "big", cache=True),
    )
    for _ in range(2):
        assert run_workflow(document, {"marks": str(marks)}, executor=local_executor) == 1 << 20
    assert calls(marks, "big") == calls(marks, "size") == 1
    assert calls(marks, "probe-thread-pickle") >= 2  # stored; digested as an argument
    assert calls(marks, "probe-thread-unpickle") >= 1  # taken from the cache
    assert calls(marks, "probe-loop") == 0


# -- modes: run_workflow(cache=...), --no-cache, --refresh-cache ---------------------------


def test_cache_false_neither_reads_nor_writes(local_executor, marks, app_home):
    run_input = {"marks": str(marks), "n": 3}
    run_workflow(scaled(), run_input, executor=local_executor, cache=False)
    assert entry_files(app_home) == []
    run_workflow(scaled(), run_input, executor=local_executor)
    run = run_workflow(scaled(), run_input, executor=local_executor, cache=False, return_run=True)
    assert run.stages["scaled"].state == "finished"
    assert calls(marks, "scaled") == 3


def test_bad_cache_mode_is_a_user_error():
    from flowstage.core.errors import UserError

    with pytest.raises(UserError, match="expected True, False or 'refresh'"):
        run_workflow(scaled(), {"marks": "x", "n": 1}, cache="sometimes")


def write_scaled(tmp_path: Path) -> Path:
    path = tmp_path / "scaled.yaml"
    path.write_text(yaml.safe_dump(scaled()))
    return path


def test_cli_no_cache_and_refresh_cache(tmp_path, marks, app_home, capsys):
    path = str(write_scaled(tmp_path))
    args = ["run", path, "-q", "--marks", str(marks), "--n", "3"]
    assert run_cli(args) == 0
    assert run_cli(args) == 0
    assert calls(marks, "scaled") == 1
    assert run_cli([*args, "--no-cache"]) == 0
    assert calls(marks, "scaled") == 2
    before = [p.stat().st_mtime_ns for p in entry_files(app_home)]
    time.sleep(0.01)
    assert run_cli([*args, "--refresh-cache"]) == 0
    assert calls(marks, "scaled") == 3
    assert [p.stat().st_mtime_ns for p in entry_files(app_home)] != before  # written again
    assert run_cli(args) == 0
    assert calls(marks, "scaled") == 3
    assert run_cli([*args, "--no-cache", "--refresh-cache"]) == 2
    assert "contradict" in capsys.readouterr().err


def test_background_runs_take_the_cache_options(tmp_path, marks, app_home, capsys):
    from flowstage.state.store import get_store

    path = str(write_scaled(tmp_path))
    args = ["run", path, "-q", "--marks", str(marks), "--n", "3", "--no-wait"]

    def background(*flags: str) -> dict[str, Any]:
        capsys.readouterr()
        assert run_cli([*args, *flags]) == 0
        run_id = capsys.readouterr().out.strip()
        deadline = time.monotonic() + 60
        while True:
            row = get_store().find_run(run_id)
            if row is not None and row["state"] not in ("pending", "running"):
                return row
            assert time.monotonic() < deadline, f"run {run_id} did not end"
            time.sleep(0.1)

    assert background("--no-cache")["state"] == "finished"
    assert entry_files(app_home) == []  # --no-cache reached the detached process
    background()
    row = background()
    assert row["stages"]["scaled"]["state"] == "cached"
    assert calls(marks, "scaled") == 2


def test_cached_state_shows_in_inspect_run_and_progress(tmp_path, marks, capsys):
    path = str(write_scaled(tmp_path))
    args = ["run", path, "--marks", str(marks), "--n", "3"]
    assert run_cli(args) == 0
    capsys.readouterr()
    assert run_cli(args) == 0
    assert "stage scaled cached" in capsys.readouterr().err  # the progress lines
    assert run_cli(["runs", "--format", "json"]) == 0
    newest = json.loads(capsys.readouterr().out)[0]["id"]
    assert run_cli(["inspect", "run", newest, "--format", "json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["stages"]["scaled"]["state"] == "cached"
    assert described["stages"]["scaled"]["note"] == "taken from the cache"


def test_retry_reuses_a_stage_the_original_took_from_the_cache(
    local_executor, marks, tmp_path, capsys
):
    flag = tmp_path / "flag"
    flag.touch()
    document = workflow(
        "retry_cached",
        {"name": "first", "target": "teststages.resume.first", "cache": True},
        {"name": "second", "target": "teststages.resume.second", "depends_on": ["first"]},
        {
            "name": "third",
            "target": "teststages.resume.third",
            "depends_on": ["second"],
            "cache": True,
        },
    )
    path = tmp_path / "retry.yaml"
    path.write_text(yaml.safe_dump(document))
    run_input = {"marks": str(marks), "flag": str(flag)}
    run_workflow(str(path), run_input, executor=local_executor, return_run=True)
    failed = run_workflow(str(path), run_input, executor=local_executor, return_run=True)
    assert failed.state == "failed" and failed.stages["first"].state == "cached"
    flag.unlink()
    assert run_cli(["runs", "retry", failed.id, "-q", "--no-cache"]) == 0
    assert capsys.readouterr().out.strip() == "20"
    assert calls(marks, "first") == 1  # reused: the original took it from the cache
    assert calls(marks, "third") == 3
    assert [r["stage"] for r in cache_rows(capsys)] == ["first"]  # --no-cache: third not stored


# -- flowstage cache ls|rm|clear --------------------------------------------------------------


def cache_rows(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    capsys.readouterr()
    assert run_cli(["cache", "ls", "--format", "json"]) == 0
    rows: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    return rows


def test_cache_ls_rm_clear(local_executor, marks, capsys):
    run_workflow(squares(), {"marks": str(marks), "n": 3}, executor=local_executor)
    run_workflow(scaled({"expire": "2h"}), {"marks": str(marks), "n": 3})
    rows = cache_rows(capsys)
    assert sorted(r["stage"] for r in rows) == ["numbers", "scaled", "square", "square", "square"]
    scaled_row = next(r for r in rows if r["stage"] == "scaled")
    assert scaled_row["workflow"] == "scaled" and scaled_row["target"] == C + "scaled"
    assert scaled_row["type"] == "int" and scaled_row["size"] > 0
    assert scaled_row["created"] < scaled_row["expires"]
    assert next(r for r in rows if r["stage"] == "numbers")["expires"] == "never"
    # rm by key prefix, by stage, by workflow
    assert run_cli(["cache", "rm", scaled_row["key"][:10]]) == 0
    assert run_cli(["cache", "rm", "--stage", "numbers"]) == 0
    assert sorted(r["stage"] for r in cache_rows(capsys)) == ["square"] * 3
    assert run_cli(["cache", "rm", "ffff0000"]) == 2
    assert "no cache entry" in capsys.readouterr().err
    assert run_cli(["cache", "rm"]) == 2
    # clear asks for confirmation (no terminal here: --yes is needed)
    assert run_cli(["cache", "clear"]) == 2
    assert "--yes" in capsys.readouterr().err
    assert len(cache_rows(capsys)) == 3
    assert run_cli(["cache", "clear", "--yes"]) == 0
    assert cache_rows(capsys) == []


def test_cache_rm_by_workflow_and_clear_expired(local_executor, marks, capsys):
    run_workflow(squares(), {"marks": str(marks), "n": 2}, executor=local_executor)
    run_workflow(scaled({"expire": "100ms"}), {"marks": str(marks), "n": 3})
    time.sleep(0.2)
    assert run_cli(["cache", "clear", "--expired", "--yes"]) == 0
    assert sorted(r["stage"] for r in cache_rows(capsys)) == ["numbers", "square", "square"]
    assert run_cli(["cache", "rm", "--workflow", "squares"]) == 0
    assert cache_rows(capsys) == []


# -- a cache shared through S3 ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_server() -> Any:
    pytest.importorskip("s3fs")
    server_module = pytest.importorskip("moto.server")
    port = _free_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    options = {
        "key": "testing",
        "secret": "testing",
        "endpoint_url": f"http://127.0.0.1:{port}",
        "client_kwargs": {"region_name": "us-west-2"},
    }
    import s3fs

    s3fs.S3FileSystem(**options).mkdir("flowstage-cache-test")
    yield options
    server.stop()


def test_an_s3_artifact_url_shares_the_cache(
    s3_server, local_executor, marks, app_home, capsys, monkeypatch
):
    import s3fs

    prefix = uuid.uuid4().hex[:8]
    url = f"s3://flowstage-cache-test/{prefix}"
    settings = {"artifacts": {"url": url, "options": s3_server}}
    (app_home / "settings.yaml").write_text(yaml.safe_dump(settings))
    run_input = {"marks": str(marks), "n": 3}
    run_workflow(squares(), run_input, executor=local_executor)
    fs = s3fs.S3FileSystem(**s3_server)
    stored = fs.find(f"flowstage-cache-test/{prefix}/.flowstage-cache")
    assert len(stored) == 4
    # another machine: a fresh app directory with the same artifact URL
    other = app_home.parent / f"other-{prefix}"
    other.mkdir()
    (other / "settings.yaml").write_text(yaml.safe_dump(settings))
    monkeypatch.setenv("FLOWSTAGE_HOME", str(other))
    run = run_workflow(squares(), run_input, executor=local_executor, return_run=True)
    assert run.stages["numbers"].state == run.stages["square"].state == "cached"
    assert calls(marks, "numbers") == 1
    assert len(cache_rows(capsys)) == 4
    fs.pipe_file(stored[0], b"garbage")
    again = run_workflow(squares(), run_input, executor=local_executor, return_run=True)
    assert again.state == "finished" and again.result == 5
    assert run_cli(["cache", "clear", "-y"]) == 0
    fs.invalidate_cache()
    assert fs.find(f"flowstage-cache-test/{prefix}/.flowstage-cache") == []


def test_cache_options_take_durations_and_a_key_list():
    text = textwrap.dedent(
        """
        kind: workflow
        metadata: {name: features}
        spec:
          stages:
            - name: load
              target: teststages.caching.numbers
              cache: {expire: 7d, key: [inputs, code]}
        """
    )
    from flowstage.core.loading import parse_resource

    parsed = parse_resource(yaml.safe_load(text), "example", default_kind="workflow")
    assert parsed.spec.stages[0].cache.expire == 7 * 86400
    assert parsed.spec.stages[0].cache.key == ["inputs", "code"]
