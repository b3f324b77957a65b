"""Real faults: a worker process killed with SIGKILL while it runs a map item, and the
driver of ``flowstage run`` killed with ``kill -9`` mid-run. A run recovers or fails
naming the stage, never hangs (pytest-timeout ends a hang), and leaves no orphans."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from flowstage import run_workflow
from flowstage.core.runs import Run

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
