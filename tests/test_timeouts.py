"""What a stage timeout frees on a reused local executor, and that pool workers die with
their driver. Real threads, processes and signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from flowstage import StageError, create_executor, run_workflow
from flowstage.core.executor import Executor

ROOT = Path(__file__).resolve().parents[1]
T = "teststages.timeouts."


def wf(*stages: dict, name: str = "wf") -> dict:
    return {"metadata": {"name": name}, "spec": {"stages": list(stages)}}


#: two independent stages that run past their timeout of 0.3 s
BUSY_PAIR = wf(
    *({"name": name, "target": T + "busy", "timeout": "300ms"} for name in ("a", "b")),
    name="busy",
)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def live_workers(before: set[int]) -> list[int]:
    """This process's live spawned workers, less those in ``before`` (other tests' pools)."""
    return [p for p in children(os.getpid(), spawned=True) if alive(p) and p not in before]


def children(pid: int, spawned: bool = False) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc); only multiprocessing's spawned
    workers if ``spawned`` (not its resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) != pid:
                continue
            if not spawned or b"spawn_main" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


def pool_threads(
    before: frozenset[threading.Thread] | set[threading.Thread] = frozenset(),
) -> list[threading.Thread]:
    """Worker threads of local pools, less those in ``before`` (other tests' pools)."""
    return [
        t
        for t in threading.enumerate()
        if t.name.startswith("flowstage-worker-") and t not in before
    ]


@pytest.fixture
def stop_busy() -> Iterator[None]:
    from teststages.timeouts import STOP

    STOP.clear()
    yield
    STOP.set()


@pytest.fixture(params=["threads", "processes"])
def reused(request: pytest.FixtureRequest) -> Iterator[Executor]:
    spec = {"name": "local", "max_workers": 2, "processes": request.param == "processes"}
    with create_executor(spec) as ex:
        yield ex


@pytest.mark.timeout(60)  # the busy calls last 300 s: a run that waits for them fails
def test_timed_out_stages_free_their_workers(reused: Executor, stop_busy: None, tmp_path) -> None:
    """Two busy stages time out on both workers; a later run on the same executor still
    runs (it hung: the workers were still busy)."""
    marks = tmp_path / "marks"
    others = set(pool_threads())
    other_workers = set(children(os.getpid(), spawned=True))
    for _ in range(2):
        busy_input = {"marker_dir": str(marks), "seconds": 300}
        run = run_workflow(BUSY_PAIR, busy_input, executor=reused, return_run=True)
        assert run.state == "failed"
        assert "timeout of 0.3s" in (run.error or "")
    assert run_workflow(wf({"name": "t", "target": T + "trivial"}), executor=reused) == "ok"
    if reused.options.processes:
        # each timed-out call's process was stopped, and the pool has its two workers
        time.sleep(0.5)
        # on a loaded machine a worker may not have started its call before the timeout
        started = list(marks.iterdir()) if marks.exists() else []
        assert all(not alive(int(mark.name.split("-")[0])) for mark in started)
        assert len(live_workers(other_workers)) <= 2
    else:
        # the abandoned threads run on, outside the pool; when their calls end, they end
        assert len(pool_threads(others)) <= 2 + 4
        from teststages.timeouts import STOP

        STOP.set()
        deadline = time.monotonic() + 10
        while len(pool_threads(others)) > 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(pool_threads(others)) <= 2


@pytest.mark.timeout(60)
@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
def test_a_timeout_counts_from_the_calls_start_not_its_wait_for_a_worker(
    processes: bool,
) -> None:
    """On one worker, ``waits`` queues behind ``first`` (busy 1.5 s). Its 1 s timeout
    starts when it gets the worker, so it finishes at once; it timed out while still
    waiting in the queue when the timeout counted from submission."""
    spec = {"name": "local", "max_workers": 1, "processes": processes}
    stages = wf(
        {"name": "first", "target": T + "busy"},
        {"name": "waits", "target": T + "trivial", "timeout": "1s"},
        name="queued",
    )
    with create_executor(spec) as ex:
        assert run_workflow(stages, {"seconds": 1.5}, executor=ex) == {
            "first": "done",
            "waits": "ok",
        }


@pytest.mark.timeout(90)
def test_timed_out_process_never_overlaps_its_retry(tmp_path) -> None:
    log = tmp_path / "attempts.log"
    stage = {
        "name": "slow",
        "target": T + "stamped_attempt",
        # counted from when a worker takes the call (after a replacement has started)
        "timeout": "2s",
        "retries": 2,
        "retry_delay": "10ms",
    }
    with create_executor({"name": "local", "max_workers": 2, "processes": True}) as ex:
        with pytest.raises(StageError, match="after 3 attempts"):
            run_workflow(wf(stage), {"log": str(log), "seconds": 20}, executor=ex)
        lines = log.read_text().splitlines()
    starts = [line.split() for line in lines if line.startswith("start")]
    assert len(starts) == 3, lines
    assert not [line for line in lines if line.startswith("end")], lines
    overlapping = [line for line in starts if len(line) > 2]
    assert not overlapping, f"attempts ran while an earlier one was alive: {overlapping}"
    assert not [int(pid) for _, pid, *_ in starts if alive(int(pid))]


@pytest.mark.timeout(60)
def test_timed_out_map_item_stops_with_its_worker_process(tmp_path) -> None:
    """A map item past its timeout is abandoned in a thread of its worker process; that
    worker then retires (the item stops) and the pool still runs later calls."""
    marks = tmp_path / "marks"
    other_workers = set(children(os.getpid(), spawned=True))
    items = {"name": "m", "target": T + "busy", "type": "parameterized", "map_on": "seconds"}
    with create_executor({"name": "local", "max_workers": 2, "processes": True}) as ex:
        run = run_workflow(
            wf({**items, "timeout": "300ms"}),
            {"seconds": [300], "marker_dir": str(marks)},
            executor=ex,
            return_run=True,
        )
        assert run.state == "failed" and "timeout" in (run.error or "")
        pids = [int(mark.name.split("-")[0]) for mark in marks.iterdir()]
        assert pids
        deadline = time.monotonic() + 10
        while [pid for pid in pids if alive(pid)] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in pids if alive(pid)], "the timed-out item still runs"
        assert run_workflow(wf({"name": "t", "target": T + "trivial"}), executor=ex) == "ok"
        assert len(live_workers(other_workers)) <= 2


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_pool_workers_die_with_a_killed_run(sig: signal.Signals, tmp_path: Path) -> None:
    """A foreground ``flowstage run -o processes=true`` killed while a stage runs leaves
    no worker behind (they were orphaned under pid 1)."""
    path = tmp_path / "busy.yaml"
    stage = {"name": "busy", "target": T + "busy"}
    path.write_text(yaml.safe_dump({"kind": "workflow", **wf(stage, name="busy")}))
    marks = tmp_path / "marks"
    command = [sys.executable, "-m", "flowstage", "run", str(path), "-o", "processes=true"]
    command += ["-o", "max_workers=2", "--marker_dir", str(marks), "--seconds", "300"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT / "src")])}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (marks.exists() and list(marks.iterdir())) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.1)
        workers = children(proc.pid, spawned=True)
        assert len(workers) == 2, "the run's process pool is not up"
        proc.send_signal(sig)
        proc.wait(30)
        deadline = time.monotonic() + 5
        while [pid for pid in workers if alive(pid)] and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [pid for pid in workers if alive(pid)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for pid in left:  # do not leave them spinning after a failure
        os.kill(pid, signal.SIGKILL)
    assert not left, f"worker processes outlived the killed run: {left}"
