"""Forgetting removed workers, for the scheduler of our local Dask cluster.

The executor kills a worker that runs a timed-out task and its nanny starts a new one
at a new address, so a long-lived executor sees a worker replaced every few runs. The
scheduler keeps two things per address for as long as it lives: the worker's event
topic (``distributed.broker``; only emptied an hour later) and, in work stealing's
in-flight counts (a ``defaultdict`` keyed by every worker it ever looked at), the
removed worker's ``WorkerState`` with its metrics. Our scheduler lives in the driver
process, so both would grow the driver for good. Only our own cluster gets this.
"""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.stealing import WorkStealing


class ForgetfulStealing(WorkStealing):
    """Work stealing that drops a removed worker from its in-flight counts."""

    def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
        """Forget the stealable tasks (as distributed does) and the in-flight counts of
        the worker at address ``worker``."""
        super().remove_worker(scheduler, worker, **kwargs)
        for counts in (self.in_flight_tasks, self.in_flight_occupancy):
            for ws in [ws for ws in counts if ws.address == worker]:
                del counts[ws]


class DeadWorkerTopics(SchedulerPlugin):
    """Drops a removed worker's event topic (its ``add-worker``/``remove-worker``
    events) once nothing subscribes to it; installs itself on the scheduler."""

    name = "flowstage-dead-worker-topics"

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        scheduler.add_plugin(self)

    def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
        """Drop the topic named ``worker`` (the address), unless a client subscribed."""
        topics = scheduler._broker._topics
        topic = topics.get(worker)
        if topic is not None and not topic.subscribers and worker not in scheduler.workers:
            del topics[worker]
