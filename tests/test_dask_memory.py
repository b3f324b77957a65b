"""The scheduler of our local Dask cluster lives in the driver process: what it keeps per
run stays in the driver. Distributed keeps every span (with its task groups) for good,
one per run on a reused executor (dask/distributed#7977); ours drops finished ones."""

from __future__ import annotations

import gc
import time
from typing import Any

import pytest

from conftest import _engine
from flowstage import run_workflow

B = "teststages.basic."
RUNS = 20


def chain() -> dict[str, Any]:
    stages = [
        {"name": "numbers", "target": B + "numbers"},
        {"name": "total", "target": B + "total", "depends_on": ["numbers"]},
    ]
    return {"metadata": {"name": "chain"}, "spec": {"stages": stages}}


def on_scheduler(executor: Any, fn: Any) -> Any:
    """``fn(scheduler)`` run on the cluster's scheduler (the executor's own client asks)."""
    return executor._client.run_on_scheduler(lambda dask_scheduler: fn(dask_scheduler))


def span_count(scheduler: Any) -> int:
    return len(scheduler.extensions["spans"].spans)


def wait_until_tasks_forgotten(executor: Any, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        gc.collect()  # futures of finished runs still held by reference cycles
        if not on_scheduler(executor, lambda scheduler: len(scheduler.tasks)):
            return
        time.sleep(0.1)


@pytest.mark.timeout(180)
def test_runs_on_a_reused_local_cluster_leave_a_bounded_number_of_spans() -> None:
    executor = _engine("dask")
    for _ in range(RUNS):
        assert run_workflow(chain(), {"n_vals": 3}, executor=executor, record=False) == 3
        # as between the runs of a service: the next run's tasks find none of this one's
        # (else they join its task groups, and so its span)
        wait_until_tasks_forgotten(executor)
    # finished spans are dropped when new tasks arrive: one more run
    run_workflow(chain(), {"n_vals": 3}, executor=executor, record=False)
    spans = on_scheduler(executor, span_count)
    # distributed alone keeps one span per run: RUNS + 1 and more
    assert spans <= 3, f"{spans} spans left on the scheduler after {RUNS + 1} runs"


def test_worker_metrics_of_a_dropped_span_are_ignored() -> None:
    """A worker reports a task's metrics with its next heartbeat, which may come after
    the task's span was dropped: the scheduler must take the heartbeat all the same."""
    executor = _engine("dask")

    def report(scheduler: Any) -> int:
        worker = next(iter(scheduler.workers.values()))
        metrics = {("execute", "a-dropped-span", "total", "seconds"): 0.5}
        scheduler.extensions["spans"].heartbeat(worker, metrics)
        return span_count(scheduler)

    before = on_scheduler(executor, span_count)
    assert on_scheduler(executor, report) == before


def dead_worker_leftovers(scheduler: Any) -> dict[str, list[str]]:
    """What the scheduler still keeps of workers it removed: their ``WorkerState``s
    (found by the garbage collector: the scheduler lives in this process) and event
    topics."""
    from distributed.scheduler import Scheduler, WorkerState

    gc.collect()
    # other tests' clusters live in this process too
    live = {id(ws) for each in Scheduler._instances for ws in each.workers.values()}
    states = [
        ws.address for ws in gc.get_objects() if isinstance(ws, WorkerState) and id(ws) not in live
    ]
    topics = [name for name in scheduler._broker._topics if name.startswith("tcp://")]
    return {
        "worker states": states,
        "topics": [name for name in topics if name not in scheduler.workers],
    }


@pytest.mark.timeout(180)
def test_workers_replaced_after_timeouts_are_forgotten_by_the_scheduler() -> None:
    """Each timeout kills a worker and its nanny starts a new one: distributed kept the
    old worker's event topic and, in work stealing's counts, its ``WorkerState``."""
    from flowstage import StageError, create_executor

    stuck = {
        "metadata": {"name": "stuck"},
        "spec": {
            "stages": [
                {"name": "stuck", "target": "teststages.engines.sleep_long", "timeout": "200ms"}
            ]
        },
    }
    with create_executor({"name": "dask", "n_workers": 1}) as executor:
        for _ in range(3):
            with pytest.raises(StageError, match="timeout"):
                run_workflow(stuck, {"seconds": 60}, executor=executor, record=False)
            # a run on the replacement: work stealing looks at it and the old worker
            assert run_workflow(chain(), {"n_vals": 3}, executor=executor, record=False) == 3
        wait_until_tasks_forgotten(executor)
        left = on_scheduler(executor, dead_worker_leftovers)
    assert left == {"worker states": [], "topics": []}


def test_our_cluster_keeps_short_message_logs() -> None:
    """The client's stream to our in-driver scheduler keeps its last batches of messages
    (each run's graph, pickled) and the scheduler its last transitions: distributed's
    caps fill only after hundreds of runs, megabytes of the driver."""
    executor = _engine("dask")
    client_log = executor._client.scheduler_comm.recent_message_log
    transitions = on_scheduler(executor, lambda scheduler: scheduler.transition_log.maxlen)
    assert (client_log.maxlen, transitions) == (100, 100)
