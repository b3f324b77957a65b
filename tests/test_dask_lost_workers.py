"""A local Dask cluster keeps its workers through many timeouts (each kills and replaces
a worker process): it lost them all after ~30 timed-out runs of a soak, and every later
run waited forever. Real Dask, with a short lost-worker timeout to make the race certain."""

from __future__ import annotations

import pytest

from flowstage import StageError, create_executor, run_workflow

E = "teststages.engines."


def workflow(name: str, target: str, timeout: str) -> dict:
    stage = {"name": name, "target": E + target, "timeout": timeout}
    return {"metadata": {"name": name}, "spec": {"stages": [stage]}}


@pytest.mark.timeout(180)
def test_a_worker_killed_for_a_timeout_is_replaced_not_dropped() -> None:
    pytest.importorskip("distributed", reason="pip install 'flowstage[dask]'")
    import dask

    # Dask closes a lost worker's nanny if no worker of its name is back this long after
    # the loss; 50 ms is shorter than any restart, as 15 s is under repeated timeouts.
    with (
        dask.config.set({"distributed.deploy.lost-worker-timeout": "50ms"}),
        create_executor({"name": "dask", "n_workers": 1}) as executor,
    ):
        for _ in range(2):
            with pytest.raises(StageError, match="timeout"):
                run_workflow(
                    workflow("stuck", "sleep_long", "200ms"), {"seconds": 60}, executor=executor
                )
        # with no worker left, this call would never start and time out
        done = run_workflow(
            workflow("after", "sleep_long", "60s"), {"seconds": 0.1}, executor=executor
        )
        assert done == 0.1


def scheduler_tasks(executor: object) -> list[str]:
    """The keys the Dask scheduler still holds (the executor's own client asks it)."""
    client = executor._client  # type: ignore[attr-defined]
    return sorted(
        str(key)
        for key in client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.tasks))
    )


@pytest.mark.timeout(120)
def test_failed_and_timed_out_runs_leave_no_tasks_on_the_cluster() -> None:
    """A failed or timed-out call's exception, kept by the Dask client, held the call's
    future through our frames in its traceback: a cycle rooted in the client, so its
    task (and the tasks it used) stayed on the cluster forever, ~30 KB a run."""
    pytest.importorskip("distributed", reason="pip install 'flowstage[dask]'")
    import gc
    import time

    chain = {
        "metadata": {"name": "fails"},
        "spec": {
            "stages": [
                {"name": "first", "target": E + "shout"},
                {"name": "second", "target": E + "refuse", "depends_on": ["first"]},
            ]
        },
    }
    with create_executor({"name": "dask", "n_workers": 1}) as executor:
        with pytest.raises(StageError, match="refused"):
            run_workflow(chain, {"word": "hi"}, executor=executor)
        with pytest.raises(StageError, match="timeout"):
            run_workflow(
                workflow("stuck", "sleep_long", "200ms"), {"seconds": 60}, executor=executor
            )
        deadline = time.monotonic() + 20
        while True:
            gc.collect()
            left = scheduler_tasks(executor)
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert left == []
