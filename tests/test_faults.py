"""Real faults: a worker process killed with SIGKILL while it runs a map item, and the
driver of ``flowstage run`` killed with ``kill -9`` mid-run. A run recovers or fails
naming the stage, never hangs (pytest-timeout ends a hang), and leaves no orphans."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowstage import run_workflow
from flowstage.core.runs import Run
from flowstage.state.store import get_store

ROOT = Path(__file__).resolve().parents[1]
F = "teststages.faults."


def mapped_workflow() -> dict[str, Any]:
    stage = {"name": "mapped", "target": F + "nap_item", "type": "parameterized"}
    return {"metadata": {"name": "victim"}, "spec": {"stages": [{**stage, "map_on": "item"}]}}


def first_marker(folder: Path, done: threading.Event) -> Path | None:
    """The first marker file a stage writes in ``folder``; None if the run ended first."""
    while not done.is_set():
        if folder.exists() and (found := sorted(folder.iterdir())):
            return found[0]
        time.sleep(0.02)
    return None


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.timeout(30, func_only=True)
@pytest.mark.parametrize("executor", ["processes", "dask", "ray"], indirect=True)
def test_a_worker_killed_mid_map_recovers_or_fails_naming_the_stage(
    executor: Any, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    outcome: list[Run] = []
    done = threading.Event()

    def run() -> None:
        try:
            data = {"item": list(range(6)), "marker_dir": str(marks), "seconds": 1.0}
            outcome.append(
                run_workflow(mapped_workflow(), data, executor=executor, return_run=True)
            )
        finally:
            done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    marker = first_marker(marks, done)
    assert marker is not None, f"the run ended before any item started: {outcome}"
    pid = int(marker.name.split("-")[0])
    assert pid != os.getpid(), "the item ran in the test process, not in a worker"
    os.kill(pid, signal.SIGKILL)
    thread.join()  # a hang here is ended by the timeout mark
    [result] = outcome
    if result.state == "finished":
        assert result.result == [0, 2, 4, 6, 8, 10]
    else:
        assert result.state == "failed" and "mapped" in (result.error or ""), result.error
    # the shared executor still runs work after losing a worker
    again = run_workflow(
        mapped_workflow(),
        {"item": [1], "marker_dir": str(tmp_path / "again"), "seconds": 0},
        executor=executor,
    )
    assert again == [2]


def children_of(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def flowstage(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLOWSTAGE_HOME": str(home)}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), str(ROOT / "src")])
    return subprocess.run(
        [sys.executable, "-m", "flowstage", *args], env=env, capture_output=True, text=True
    )


@pytest.mark.timeout(90)
def test_a_killed_driver_shows_as_failed_and_leaves_no_workers(
    tmp_path: Path, app_home: Path
) -> None:
    path = tmp_path / "doomed.yaml"
    stages = [{"name": f"nap{i}", "target": F + "nap"} for i in range(2)]
    path.write_text(
        yaml.safe_dump(
            {"kind": "workflow", "metadata": {"name": "doomed"}, "spec": {"stages": stages}}
        )
    )
    marks = tmp_path / "marks"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT / "src")])}
    command = [sys.executable, "-m", "flowstage", "run", str(path), "-o", "processes=true"]
    command += ["-o", "max_workers=2", "--marker_dir", str(marks)]
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    workers: list[int] = []
    try:
        while not (marks.exists() and len(list(marks.iterdir())) == 2):
            assert driver.poll() is None, driver.stderr.read().decode() if driver.stderr else ""
            time.sleep(0.05)
        workers = [int(m.name) for m in marks.iterdir()]
        before = children_of(driver.pid)
        assert set(workers) <= set(before), (workers, before)
        while not json.loads(flowstage("get", "runs", "--format", "json", home=app_home).stdout):
            time.sleep(0.05)  # the run's row is written once it has run for 0.1 s
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        read = flowstage("get", "runs", "--format", "json", home=app_home)
        assert read.returncode == 0, read.stderr
        [row] = json.loads(read.stdout)
        assert row["state"] == "failed", row
        error = get_store().find_run(row["id"])["error"]
        assert f"pid {driver.pid}" in error and "ended without finishing" in error, error
        while [pid for pid in before if alive(pid)]:
            time.sleep(0.05)  # a worker that outlives its driver is ended by the timeout mark
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
