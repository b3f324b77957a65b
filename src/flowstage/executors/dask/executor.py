"""The ``dask`` executor: calls run as tasks on a Dask cluster.

By default it starts a fresh ``distributed.LocalCluster`` (worker processes with one
thread each, bound to 127.0.0.1, no dashboard unless ``dashboard: true``); with
``address:`` it connects to an existing scheduler instead. Handles are Dask futures, so
a dependent stage's task receives its inputs on the cluster, not through the driver.

Stage resources become Dask task resources. ``cpus`` and ``memory`` are checked against
each worker's threads and memory limit when the workers do not declare them as
resources; ``gpus`` and custom names must be declared by some worker (the ``resources:``
option for a local cluster, ``dask worker --resources`` for an external one).

dask/distributed are imported inside methods only: the CLI loads every plugin at
start-up and must stay fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from flowstage.core.calls import CallFailure
from flowstage.core.errors import ExecutorError, StageError
from flowstage.executors.cluster import ClusterExecutor
from flowstage.executors.common import (
    ClusterOptions,
    main_module_hidden,
    parse_capacity,
)
from flowstage.executors.dask.connect import probe_scheduler
from flowstage.executors.dask.futures import (
    future_of,
    gather,
    label_of,
    release,
    stop,
    traceback_of,
    wait_done,
)
from flowstage.executors.dask.local_cluster import short_logs, start_local_cluster
from flowstage.executors.dask.results import (
    opened,
    register_with_dask,
)
from flowstage.executors.dask.worker import (
    CODE_PLUGIN,
    code_plugin,
    run_remote,
    worker_plugin,
)
from flowstage.executors.packing import SHARE_ABOVE, Shared, pack_call

if TYPE_CHECKING:
    from flowstage.core.models import Resources
    from flowstage.core.sources import SourceBundle

log = logging.getLogger("flowstage.executors.dask.executor")

#: how long a run waits at most for every worker to take its stage code (a worker whose
#: event loop is blocked would hold up the run's start; it gets the code with its tasks)
INSTALL_SECONDS = 30.0

#: resources a worker has even when it does not declare them (threads, memory limit)
_IMPLICIT = ("cpus", "memory")


class DaskOptions(ClusterOptions):
    """Options of the ``dask`` executor."""

    n_workers: int | None = Field(default=None, ge=1)
    threads_per_worker: int = Field(default=1, ge=1)
    resources: dict[str, float] = Field(default_factory=dict)

    _capacity = field_validator("resources", mode="before")(parse_capacity)


# --- the driver side -----------------------------------------------------------------


class DaskExecutor(ClusterExecutor):
    """Runs calls as tasks on a Dask cluster (a fresh local one, or ``address:``)."""

    name = "dask"
    Options = DaskOptions
    options: DaskOptions
    requires = ("distributed",)
    extra = "dask"
    local_only = ("n_workers", "threads_per_worker", "resources", "dashboard")
    remote_name = local_name = "Dask cluster"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._client: Any = None
        self._cluster: Any = None
        self._plugin_name: str | None = None
        self._output_topic: str | None = None
        #: per worker: what it offers (declared resources, plus threads and memory limit)
        self._workers: dict[str, dict[str, float]] = {}
        self._declared: set[str] = set()
        self._threads = 0

    # lifecycle -----------------------------------------------------------------------

    def _start(self) -> None:
        distributed = self.import_engine()
        register_with_dask()
        opts = self.options
        if opts.address:
            self._client = self._connect(distributed, opts.address)
            # Local workers write to our terminal; remote ones send stage log records and
            # printed lines here.
            with contextlib.suppress(Exception):
                self._client.forward_logging()
            self._output_topic = f"flowstage-output-{uuid.uuid4().hex[:8]}"
            self._client.subscribe_topic(self._output_topic, _print_output)
        else:
            n_workers = opts.n_workers or os.cpu_count() or 1
            with main_module_hidden():
                self._cluster = start_local_cluster(
                    n_workers=n_workers,
                    threads_per_worker=opts.threads_per_worker,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                    # The scheduler serves HTTP (health checks) even without a dashboard;
                    # a random port keeps it off 8787, which another cluster may hold.
                    scheduler_kwargs={
                        "dashboard": opts.dashboard,
                        "dashboard_address": "127.0.0.1:8787" if opts.dashboard else "127.0.0.1:0",
                    },
                    resources=dict(opts.resources) or None,
                    env=dict(opts.env) or None,
                    silence_logs=logging.WARNING,
                )
            try:
                # the client's stream keeps its last messages (each run's graph)
                with short_logs():
                    self._client = distributed.Client(self._cluster, set_as_default=False)
            except BaseException:
                self._cluster.close()
                self._cluster = None
                raise
        # On a local cluster the nannies already set ``env`` before the workers start.
        self._plugin_name = f"flowstage-{uuid.uuid4().hex[:8]}"
        plugin = worker_plugin(opts.env if opts.address else {}, self._plugin_name)
        self._client.register_plugin(plugin, name=self._plugin_name)
        self.refresh()

    def _connect(self, distributed: Any, address: str) -> Any:
        timeout = self.options.connect_timeout
        try:
            probe_scheduler(address, timeout)
            client = distributed.Client(address, timeout=timeout, set_as_default=False)
        except Exception as exc:  # noqa: BLE001 - any failure to reach the scheduler is reported with the address
            detail = f": {type(exc).__name__}: {exc}" if str(exc) else ""
            msg = (
                f"executor 'dask': no Dask scheduler answered at {address!r} within {timeout:g}s "
                f"(option 'connect_timeout'){detail}"
            )
            raise ExecutorError(msg) from None
        try:
            client.wait_for_workers(1, timeout=timeout)
        except Exception:  # noqa: BLE001 - no worker in time, whatever the reason
            client.close()
            msg = (
                f"executor 'dask': the Dask scheduler at {address!r} has no workers "
                f"(waited {timeout:g}s)"
            )
            raise ExecutorError(msg) from None
        return client

    def _close(self) -> None:
        client, cluster = self._client, self._cluster
        self._client = self._cluster = None
        if client is not None:
            if self._output_topic:
                with contextlib.suppress(Exception):
                    client.unsubscribe_topic(self._output_topic)
                self._output_topic = None
            if self._plugin_name:
                with contextlib.suppress(Exception):
                    client.unregister_worker_plugin(self._plugin_name)
                self._plugin_name = None
            with contextlib.suppress(Exception):
                client.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()
        self._workers = {}

    def install_code(self, bundle: SourceBundle) -> None:
        """The code goes to every worker (and to workers that join later) as a worker
        plugin, registered at each run: a worker may receive instances of its classes
        (upstream values) before it runs a task of the run. The plugin stays with the
        cluster; the next run's code replaces it (this executor's or another's)."""
        if self._client is None:
            self.start()
        client = self._client
        problems: list[str] = []
        done = threading.Event()

        def register() -> None:
            try:
                client.register_plugin(code_plugin(bundle), name=CODE_PLUGIN)
            except Exception as exc:  # noqa: BLE001 - the run's tasks still bring the code along
                problems.append(f"{type(exc).__name__}: {exc}")
            finally:
                done.set()

        # Distributed has no timeout for this: a thread that may be left waiting does it.
        threading.Thread(target=register, name="flowstage-install-code", daemon=True).start()
        if not done.wait(INSTALL_SECONDS):
            problems.append(f"not every worker answered within {INSTALL_SECONDS:g}s")
        if problems:
            log.warning(
                "the stage code could not be put on every Dask worker ahead of the run (its tasks "
                "bring it along, but a worker cannot take values of its classes before): %s",
                problems[0],
            )

    def _read_capacities(self) -> None:
        """Read the workers' capacities from the scheduler."""
        workers = self._client.scheduler_info(n_workers=-1)["workers"]
        capacities: dict[str, dict[str, float]] = {}
        declared: set[str] = set()
        threads = 0
        for address, info in workers.items():
            offered = {k: float(v) for k, v in (info.get("resources") or {}).items()}
            declared.update(offered)
            offered.setdefault("cpus", float(info.get("nthreads") or 1))
            if info.get("memory_limit"):
                offered.setdefault("memory", float(info["memory_limit"]))
            capacities[address] = offered
            threads += int(info.get("nthreads") or 1)
        self._workers, self._declared, self._threads = capacities, declared, threads

    # work ----------------------------------------------------------------------------

    @property
    def parallelism(self) -> int:
        return max(
            1,
            self._threads
            or (self.options.n_workers or os.cpu_count() or 1) * self.options.threads_per_worker,
        )

    def offers(self) -> list[dict[str, float]]:
        return list(self._workers.values())

    def fits(self, wanted: dict[str, float], offer: dict[str, float]) -> bool:
        return all(
            (k not in offer and k in _IMPLICIT) or offer.get(k, 0.0) >= v for k, v in wanted.items()
        )

    def cluster_hint(self) -> str:
        return "configure the workers of that cluster instead"

    def resource_hint(self) -> str:
        if self.options.address:
            return "start workers with --resources NAME=N"
        return "set the executor option 'resources' or 'threads_per_worker'"

    def _task_resources(self, resources: Resources | None) -> dict[str, float] | None:
        if resources is None:
            return None
        wanted = {
            k: v
            for k, v in resources.requested().items()
            if v and (k in self._declared or k not in _IMPLICIT)
        }
        return wanted or None

    async def submit(
        self,
        fn: Callable[..., Any],
        *args: Any,
        resources: Resources | None = None,
        label: str = "",
    ) -> Any:
        if self._client is None:
            await asyncio.to_thread(self.start)
        name = label or getattr(fn, "__name__", "call")
        # One pickle of the call: the scheduler never unpickles stage arguments.
        packed = pack_call(fn, args, future_of, ("distributed", "dask"))
        call, values = (fn, list(args)) if packed is None else packed
        return self._client.submit(
            run_remote,
            name,
            self._output_topic,
            call,
            *values,
            key=f"{name}-{uuid.uuid4().hex}",
            resources=self._task_resources(resources),
            pure=False,
        )

    async def wait(self, handle: Any) -> None:
        problem = await wait_done(handle)
        if problem is None:
            return
        release(handle)
        if isinstance(problem, CallFailure):
            raise problem
        label = label_of(handle)
        raise CallFailure(label, None, 1, traceback_of(problem), problem)

    async def result(self, handle: Any) -> Any:
        try:
            return opened(await gather(self._client, handle))
        except CallFailure:
            release(handle)
            raise
        except Exception as exc:
            release(handle)
            label = label_of(handle)
            msg = (
                f"stage {label!r}: its result could not be fetched from Dask: "
                f"{type(exc).__name__}: {exc}"
            )
            raise StageError(msg, stage=label, traceback=traceback_of(exc)) from exc

    def cancel(self, handles: Iterable[Any]) -> None:
        client = self._client
        futures = [h for h in handles if self.is_handle(h) and not h.done()]
        if client is None or not futures:
            return
        own_cluster = self._cluster is not None
        threading.Thread(
            target=stop,
            args=(client, futures, own_cluster, lambda: self._client),
            daemon=True,
            name="flowstage-dask-cancel",
        ).start()

    def share(self, data: bytes) -> Shared | None:
        if len(data) <= SHARE_ABOVE:
            return None  # cheaper inside each task than as one more task argument
        if self._client is None:
            self.start()
        # A task argument: Dask hands each task the copy its worker already holds.
        return Shared(self._client.scatter(data, broadcast=True, hash=False))

    def cluster_memory(self) -> dict[str, Any] | None:
        """Objects scattered to workers and published on this cluster's scheduler."""
        if self._client is None:
            return None
        return {
            "factory": "flowstage.executors.dask.memory:DaskMemory",
            "address": self._client.scheduler.address,
        }

    def is_handle(self, value: Any) -> bool:
        return future_of(value) is not None

    def describe(self) -> str:
        if self.options.address:
            return f"dask ({self.options.address})"
        workers = self.options.n_workers or os.cpu_count() or 1
        dashboard = ""
        if self._client is not None and self.options.dashboard:
            dashboard = f", dashboard {self._client.dashboard_link}"
        return (
            f"dask (local cluster, {workers} workers x "
            f"{self.options.threads_per_worker} threads{dashboard})"
        )


def _print_output(event: tuple[float, dict[str, str]]) -> None:
    """Write lines a stage printed on a worker of an external cluster to our own stream."""
    message = event[1]
    stream = sys.stderr if message.get("stream") == "stderr" else sys.stdout
    prefix = f"({message.get('stage', 'stage')}) "
    stream.write("".join(prefix + line + "\n" for line in str(message.get("text", "")).split("\n")))
    stream.flush()
