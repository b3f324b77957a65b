"""``flowstage run --no-wait``: a detached process records its progress; ``runs``
shows it, ``runs logs`` prints its output, ``runs cancel`` stops it, and a killed
process shows as failed. Real ``flowstage`` processes; each test has its own
FLOWSTAGE_HOME."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
import yaml

from cli_process import cli
from flowstage.state.liveness import process_alive
from flowstage.state.store import get_store

WORKFLOWS = """\
kind: workflow
metadata: {name: talker}
spec:
  stages:
    - name: speak
      target: teststages.state.chatty
    - name: source
      target: teststages.state.run_source
---
kind: workflow
metadata: {name: napper}
spec:
  stages:
    - name: nap
      target: teststages.state.sleepy
"""


def start(*args: str) -> str:
    done = cli("run", *args, "--no-wait")
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    assert len(run_id) == 12 and " " not in run_id  # the id alone
    return run_id


def wait_for(run_id: str, states: tuple[str, ...], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        row = get_store().find_run(run_id)
        if row is not None and row["state"] in states:
            return row
        assert time.monotonic() < deadline, f"run {run_id} is still {row and row['state']}"
        time.sleep(0.1)


@pytest.fixture(autouse=True)
def applied(tmp_path: Path) -> None:
    path = tmp_path / "workflows.yaml"
    path.write_text(WORKFLOWS)
    assert cli("apply", "-p", str(path)).returncode == 0


def test_no_wait_returns_at_once_and_the_run_finishes_in_the_history() -> None:
    began = time.monotonic()
    run_id = start("talker", "--word", "bonjour")
    assert time.monotonic() - began < 15
    listed = json.loads(cli("runs", "--format", "json").stdout)
    assert [r["id"] for r in listed] == [run_id]
    assert listed[0]["source"] == "background" and listed[0]["state"] in (
        "pending",
        "running",
        "finished",
    )
    row = wait_for(run_id, ("finished", "failed"))
    assert row["state"] == "finished", row["error"]
    assert get_store().load_result(row) == {"speak": "bonjour", "source": "background"}
    logs = cli("runs", "logs", run_id)
    assert logs.returncode == 0, logs.stderr
    assert "printed bonjour" in logs.stdout and "logged bonjour" in logs.stdout


def test_cancel_stops_a_background_run() -> None:
    run_id = start("napper", "--seconds", "60")
    row = wait_for(run_id, ("running",))
    pid = row["pid"]
    done = cli("runs", "cancel", run_id)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"run {run_id} cancelled"
    row = get_store().find_run(run_id)
    assert row["state"] == "cancelled" and row["stages"]["nap"]["state"] == "cancelled"
    deadline = time.monotonic() + 10
    while process_alive(pid, None):
        assert time.monotonic() < deadline, "the background process did not exit"
        time.sleep(0.1)
    assert "sleeping 60" in cli("runs", "logs", run_id).stdout
    again = cli("runs", "cancel", run_id)
    assert again.returncode == 2 and "already ended (cancelled)" in again.stderr


def test_a_cancel_asked_in_the_row_stops_the_run() -> None:
    # what `runs cancel` on another host does: it cannot signal the process
    run_id = start("napper", "--seconds", "60")
    wait_for(run_id, ("running",))
    store = get_store()
    assert not store.cancel_requested(run_id)
    store.request_cancel(run_id)
    assert store.cancel_requested(run_id)
    row = wait_for(run_id, ("cancelled", "failed", "finished"), timeout=30)
    assert row["state"] == "cancelled", row["error"]
    assert not store.cancel_requested("nosuchrun")


def test_a_killed_background_process_shows_as_failed_with_the_reason() -> None:
    run_id = start("napper", "--seconds", "60")
    row = wait_for(run_id, ("running",))
    os.kill(row["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while process_alive(row["pid"], None):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    listed = json.loads(cli("get", "runs", "--format", "json").stdout)
    assert [(r["id"], r["state"]) for r in listed] == [(run_id, "failed")]
    detail = yaml.safe_load(cli("inspect", "run", run_id).stdout)
    assert f"background process (pid {row['pid']}) ended without finishing" in detail["error"]
    assert "sleeping 60" in detail["error"]  # its last output
    assert detail["stages"]["nap"]["state"] == "failed" and detail["finished_at"]


def test_bad_input_fails_before_anything_starts() -> None:
    done = cli("run", "napper", "--no-wait")
    assert done.returncode == 2 and "seconds" in done.stderr
    done = cli("run", "no_such_workflow", "--no-wait")
    assert done.returncode == 2 and "known workflows" in done.stderr
    assert json.loads(cli("runs", "--format", "json").stdout) == []


def test_logs_of_a_foreground_run_explain_where_its_output_went() -> None:
    done = cli("run", "talker", "-q")
    assert done.returncode == 0 and "printed hello" in done.stdout
    [run] = json.loads(cli("runs", "--format", "json").stdout)
    assert run["source"] == "cli"
    logs = cli("runs", "logs", run["id"])
    assert logs.returncode == 2 and "only --no-wait runs keep a log" in logs.stderr


def test_logs_reads_only_the_runs_own_log_file(tmp_path: Path) -> None:
    run_id = start("talker")
    wait_for(run_id, ("finished",))
    home = Path(os.environ["FLOWSTAGE_HOME"])
    secret = tmp_path / "secret.txt"
    secret.write_text("not for runs logs\n")
    # the row names a file elsewhere: the run's own log is printed
    with sqlite3.connect(home / "flowstage.db") as conn:
        conn.execute("UPDATE runs SET log_path = ? WHERE id = ?", (str(secret), run_id))
    logs = cli("runs", "logs", run_id)
    assert logs.returncode == 0 and "printed hello" in logs.stdout
    assert "not for runs logs" not in logs.stdout
    # the log itself leads out of the logs directory: refused
    own = home / "logs" / f"{run_id}.log"
    own.unlink()
    own.symlink_to(secret)
    logs = cli("runs", "logs", run_id)
    assert logs.returncode == 2 and "not a file under" in logs.stderr
    assert "not for runs logs" not in logs.stdout


def test_cancelling_a_run_of_another_program_points_to_the_service(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import threading

    from flowstage import run_workflow
    from flowstage.cli.main import run_cli

    workflow = {
        "metadata": {"name": "held"},
        "spec": {"stages": [{"name": "nap", "target": "teststages.state.sleepy"}]},
    }
    runner = threading.Thread(target=run_workflow, args=(workflow, {"seconds": 1.5}))
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while not (rows := get_store().list_runs(workflow="held")[0]):
            assert time.monotonic() < deadline, "the run never got its row"
            time.sleep(0.05)
        run_id = rows[0]["id"]
        assert run_cli(["runs", "cancel", run_id]) == 2
        error = capsys.readouterr().err
        assert f"flowstage runs cancel {run_id} --server URL" in error
    finally:
        runner.join()
