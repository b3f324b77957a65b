"""The SQLite history killed mid-write, 50 times: a writer process recording runs in a
loop gets SIGKILL at a random moment; the database stays intact and every run the
writer saw finish is in it, finished."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from flowstage.state.store import get_store

ROOT = Path(__file__).resolve().parents[1]
KILLS = 50

#: Imports flowstage once, then forks one writer per line on stdin (a fresh interpreter
#: per kill would spend most of the test starting Python) and prints
#: ``<pid>`` when it starts and ``<pid> <wait status>`` when it ends.
ZYGOTE = textwrap.dedent("""
    import os, sys
    from flowstage import run_workflow

    reports = sys.argv[1]
    def wf(target):
        stages = [{"name": "only", "target": "teststages.state." + target}]
        return {"metadata": {"name": "writer"}, "spec": {"stages": stages}}

    for line in sys.stdin:
        pid = os.fork()
        if pid == 0:
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # stdout is for the pids
            out = os.open(os.path.join(reports, str(os.getpid())), os.O_WRONLY | os.O_CREAT)
            for n in range(10_000):
                if n % 4 == 3:  # longer than 0.1 s: a running row, then its outcome
                    run = run_workflow(wf("sleepy"), {"seconds": 0.12}, return_run=True)
                else:
                    run = run_workflow(wf("count_items"), {"loop": [n] * n}, return_run=True)
                if run.state == "finished":
                    os.write(out, (run.id + "\\n").encode())
            os._exit(0)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(pid, status, flush=True)
""")


@pytest.mark.timeout(240)
def test_a_writer_killed_fifty_times_loses_no_finished_run(tmp_path: Path, app_home: Path) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    moments = random.Random(seed)
    reports = tmp_path / "reports"
    reports.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT / "src")])}
    zygote = subprocess.Popen(
        [sys.executable, "-c", ZYGOTE, str(reports)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert zygote.stdin is not None and zygote.stdout is not None
    try:
        for _ in range(KILLS):
            zygote.stdin.write("go\n")
            zygote.stdin.flush()
            pid = int(zygote.stdout.readline())
            time.sleep(moments.uniform(0.05, 0.6))
            os.kill(pid, signal.SIGKILL)
            ended, status = map(int, zygote.stdout.readline().split())
            assert ended == pid and os.WIFSIGNALED(status), f"writer {pid} ended by itself"
    finally:
        zygote.kill()
        zygote.wait()
    reported = {line for f in reports.iterdir() for line in f.read_text().split()}
    database = app_home / "flowstage.db"
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)], f"seed {seed}"
    rows, _ = get_store().list_runs(limit=0, workflow="writer")
    states = {row["id"]: row["state"] for row in rows}
    lost = [run_id for run_id in reported if states.get(run_id) != "finished"]
    print(f"{len(reported)} runs reported finished, {len(states)} rows")
    assert len(reported) >= KILLS and not lost, f"seed {seed}: lost {lost}"
    assert set(states.values()) <= {"finished", "failed"}, f"seed {seed}: {states}"
