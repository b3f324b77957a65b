"""``runs cancel`` signals a run's process only when its recorded start time proves the
pid still belongs to it: a pid reused by an unrelated program is never signalled."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path

from cli_process import cli
from flowstage.state.store import get_store

WORKFLOW = """\
kind: workflow
metadata: {name: napper}
spec:
  stages:
    - name: nap
      target: teststages.state.sleepy
"""


def test_a_run_without_a_recorded_start_time_never_gets_an_unrelated_pid_killed(
    tmp_path: Path, app_home: Path
) -> None:
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    assert cli("apply", "-p", str(tmp_path / "wf.yaml")).returncode == 0
    started = cli("run", "napper", "--seconds", "60", "--no-wait")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    deadline = time.monotonic() + 60
    while get_store().find_run(run_id)["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    bystander = subprocess.Popen(["sleep", "60"])  # as if it had reused the run's pid
    try:
        with sqlite3.connect(app_home / "flowstage.db") as conn:  # a row of an older flowstage
            conn.execute(
                "UPDATE runs SET pid = ?, pid_start = NULL WHERE id = ?", (bystander.pid, run_id)
            )
        done = cli("runs", "cancel", run_id, "--timeout", "0.5")
        assert bystander.poll() is None  # not signalled
        assert done.returncode == 2
        assert f"did not signal pid {bystander.pid}" in done.stderr
        assert "no process start time" in done.stderr
        # the background run itself saw the request and stopped, as the message says
        while get_store().find_run(run_id)["state"] in ("pending", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert get_store().find_run(run_id)["state"] == "cancelled"
    finally:
        bystander.kill()
        bystander.wait()
