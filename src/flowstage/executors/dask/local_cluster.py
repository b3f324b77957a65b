"""The local Dask cluster of the ``dask`` executor: one that keeps its nannies.

A timed-out task cannot be interrupted, so the executor kills the worker process that
runs it and the worker's nanny starts a fresh one. ``SpecCluster`` (``LocalCluster``'s
base) also reacts to every lost worker: ``distributed.deploy.lost-worker-timeout``
(15 s) later, if no worker of that name is registered *at that moment*, it closes the
nanny for good. Under repeated timeouts a check often lands while a replacement is
still starting, and the cluster shrinks until no worker is left and every run waits
forever (a soak of 300 runs, one in ten timing out, lost both workers by run 291). That
rule exists for clusters whose workers are jobs that may vanish; a local nanny
restarts its worker itself, so here a lost worker only updates the cluster's view.

Its scheduler runs in the driver process and would keep a span per run for good; it
drops the finished ones instead (:mod:`flowstage.executors.dask.span_pruning`), forgets
replaced workers (:mod:`flowstage.executors.dask.dead_workers`) and keeps shorter logs:
distributed's caps (1,000 transitions and events per topic, 10,000 log records per
scheduler and nanny) are sized for a scheduler of its own, and fill only after many
hundreds of runs, some megabytes of the driver. Lines a stage prints reach the driver as
they are published, not from these logs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

#: log lengths of our in-driver scheduler and nannies (see the module docstring)
LOG_CAPS = {"distributed.admin.low-level-log-length": 100, "distributed.admin.log-length": 1000}


@contextlib.contextmanager
def short_logs() -> Iterator[None]:
    """Within: distributed's logs and message logs started get :data:`LOG_CAPS`."""
    import dask.config  # deliberately lazy, as distributed below

    with dask.config.set(LOG_CAPS):
        yield


def start_local_cluster(**options: Any) -> Any:
    """A started ``distributed.LocalCluster`` built with ``options`` whose nannies are
    never closed because their worker was lost (they restart it) and whose scheduler
    forgets the spans of forgotten tasks and removed workers, with short logs."""
    # deliberately lazy: distributed is an optional extra, and this module is imported
    # with the executor when the CLI loads every plugin
    from distributed import LocalCluster
    from distributed.deploy.cluster import Cluster

    from flowstage.executors.dask.span_pruning import scheduler_extensions

    class NannyKeepingCluster(LocalCluster):
        def _update_worker_status(self, op: str, msg: Any) -> None:
            # Cluster's bookkeeping of the scheduler's view, without SpecCluster's
            # delayed close of the lost worker's nanny
            Cluster._update_worker_status(self, op, msg)

    scheduler_kwargs = {"extensions": scheduler_extensions(), **options.pop("scheduler_kwargs", {})}
    # the caps are read as the scheduler and nannies start; the rest of the process
    # keeps the user's configuration
    with short_logs():
        return NannyKeepingCluster(scheduler_kwargs=scheduler_kwargs, **options)
