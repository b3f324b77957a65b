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
drops the finished ones instead (:mod:`flowstage.executors.dask.span_pruning`).
"""

from __future__ import annotations

from typing import Any


def start_local_cluster(**options: Any) -> Any:
    """A started ``distributed.LocalCluster`` built with ``options`` whose nannies are
    never closed because their worker was lost (they restart it) and whose scheduler
    forgets the spans of forgotten tasks."""
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
    return NannyKeepingCluster(scheduler_kwargs=scheduler_kwargs, **options)
