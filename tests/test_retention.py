"""Run retention: `runs prune --older-than/--keep`, `delete run ID` and the
store.run_retention setting delete ended runs with their result and log files, and
never a run that is still going or a file outside the app dir. Real CLI processes."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from cli_process import cli
from flowstage import run_workflow
from flowstage.state.store import get_store

PAIR = {
    "metadata": {"name": "pair"},
    "spec": {"stages": [{"name": "only", "target": "teststages.state.pair"}]},
}
LONG_AGO = "2000-01-01T00:00:00+00:00"


def runs(app_home: Path, count: int) -> list[tuple[str, Path, Path]]:
    """``count`` finished runs, oldest first: id, result pickle, a log file of its own."""
    out = []
    for _ in range(count):
        run_id = run_workflow(PAIR, return_run=True).id
        row = get_store().find_run(run_id)
        log = app_home / "logs" / f"{run_id}.log"
        log.parent.mkdir(exist_ok=True)
        log.write_text("output\n")
        with sqlite3.connect(app_home / "flowstage.db") as conn:
            conn.execute("UPDATE runs SET log_path = ? WHERE id = ?", (str(log), run_id))
        out.append((run_id, app_home / row["result"], log))
    return out


def age(app_home: Path, run_id: str, when: str = LONG_AGO, state: str | None = None) -> None:
    with sqlite3.connect(app_home / "flowstage.db") as conn:
        conn.execute(
            "UPDATE runs SET finished_at = ?, created_at = ?, state = COALESCE(?, state) "
            "WHERE id = ?",
            (when, when, state, run_id),
        )


def ids() -> set[str]:
    rows, _ = get_store().list_runs(limit=0)
    return {r["id"] for r in rows}


def test_prune_older_than_deletes_old_ended_runs_and_their_files(app_home: Path) -> None:
    (old, old_result, old_log), (going, _, _), (new, new_result, new_log) = runs(app_home, 3)
    age(app_home, old)
    age(app_home, going, state="running")
    dry = cli("runs", "prune", "--older-than", "30d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"run/{old} would be deleted" in dry.stdout and ids() == {old, going, new}
    done = cli("runs", "prune", "--older-than", "30d")
    assert done.returncode == 0, done.stderr
    assert "1 run(s) pruned" in done.stdout
    assert ids() == {going, new}  # a running run is never pruned, however old
    assert not old_result.exists() and not old_log.exists()
    assert new_result.exists() and new_log.exists()


def test_prune_keep_n_and_both_together(app_home: Path) -> None:
    made = [run_id for run_id, _, _ in runs(app_home, 5)]
    age(app_home, made[0])
    age(app_home, made[1])
    both = cli("runs", "prune", "--older-than", "30d", "--keep", "4")
    assert both.returncode == 0, both.stderr
    assert ids() == set(made[1:])  # old and beyond the newest 4: only the first
    keep = cli("runs", "prune", "--keep", "2")
    assert keep.returncode == 0, keep.stderr
    assert ids() == set(made[3:])


def test_the_run_retention_setting_is_what_a_bare_prune_applies(app_home: Path) -> None:
    (old, _, _), (new, _, _) = runs(app_home, 2)
    age(app_home, old)
    bare = cli("runs", "prune")
    assert bare.returncode == 2 and "store.run_retention" in bare.stderr
    done = cli("runs", "prune", env={"FLOWSTAGE__STORE__RUN_RETENTION": "30d"})
    assert done.returncode == 0, done.stderr
    assert ids() == {new}
    bad = cli("runs", "prune", "--older-than", "soon")
    assert bad.returncode == 2 and "--older-than" in bad.stderr


def test_delete_run_removes_its_row_and_files_and_refuses_a_running_one(
    app_home: Path,
) -> None:
    (first, result, log), (second, _, _) = runs(app_home, 2)
    done = cli("delete", "run", first[:8])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"run/{first} deleted"
    assert ids() == {second} and not result.exists() and not log.exists()
    assert cli("delete", "run", first).returncode == 2  # gone
    age(app_home, second, when=time.strftime("%Y-%m-%dT%H:%M:%S+00:00"), state="running")
    refused = cli("delete", "run", second)
    assert refused.returncode == 2 and "runs cancel" in refused.stderr
    assert ids() == {second}


@pytest.mark.parametrize("outside", ["../victim", "/ABS"])
def test_a_row_never_gets_a_file_outside_the_app_dir_deleted(app_home: Path, outside: str) -> None:
    ((run_id, _, _),) = runs(app_home, 1)
    victim = app_home.parent / "victim"
    victim.write_text("precious")
    log = str(victim) if outside == "/ABS" else str(app_home / "logs" / ".." / ".." / "victim")
    with sqlite3.connect(app_home / "flowstage.db") as conn:
        conn.execute("UPDATE runs SET log_path = ? WHERE id = ?", (log, run_id))
    assert cli("delete", "run", run_id).returncode == 0
    assert victim.read_text() == "precious"


def test_the_service_applies_run_retention_when_it_starts(
    app_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    pytest.importorskip("fastapi", reason="the service needs the 'service' extra")
    from flowstage.core.settings import ServiceSettings
    from flowstage.service import Service

    (old, old_result, old_log), (new, _, _) = runs(app_home, 2)
    age(app_home, old)
    monkeypatch.setenv("FLOWSTAGE__STORE__RUN_RETENTION", "30d")

    async def start_and_stop() -> None:
        service = Service(ServiceSettings(), executor={"name": "local", "max_workers": 1})
        await service.start()
        for _ in range(200):  # the first prune runs in a thread right after the start
            if get_store().find_run(old) is None:
                break
            await asyncio.sleep(0.02)
        await service.drain(0.0)
        await service.close()

    asyncio.run(start_and_stop())
    assert get_store().find_run(old) is None and get_store().find_run(new) is not None
    assert not old_result.exists() and not old_log.exists()
