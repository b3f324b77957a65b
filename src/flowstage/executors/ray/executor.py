"""The ``ray`` executor: calls run as Ray tasks.

By default it starts a fresh local Ray (``ray.init(address="local")``: it never attaches
to a cluster it was not given), with the dashboard off and quiet logs; stage ``print``
output still reaches the driver. With ``address:`` (``ray://host:port``, ``host:port``
or ``auto``) it connects to an existing cluster and leaves it running on close.

Every call goes through one remote function with two returns: the value, which stays in
the cluster's object store and is passed on to dependent tasks as an ``ObjectRef`` (Ray
resolves top-level refs in the arguments), and a small status object the driver waits
on. Ray stores both together, in that order: a value it cannot serialize fails the
status too. Stage ``cpus``/``gpus``/``memory``/custom resources become the task's
``num_cpus``/``num_gpus``/``memory``/``resources``; only those that are set are passed.

ray is imported inside methods only: the CLI loads every plugin at start-up and must
stay fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from flowstage.core.calls import CallFailure
from flowstage.core.errors import ExecutorError, ResultNotTransferable, StageError
from flowstage.executors.cluster import ClusterExecutor
from flowstage.executors.common import (
    ClusterOptions,
)
from flowstage.executors.packing import (
    SHARE_ABOVE,
    Shared,
    UnpackedFirst,
    pack_call,
)
from flowstage.executors.ray.connect import driver_paths, probe, quiet_token_notice
from flowstage.executors.ray.handles import RayHandle, Watcher, ref_of
from flowstage.executors.ray.worker import SharedBytes, remote_function

if TYPE_CHECKING:
    from flowstage.core.models import Resources

log = logging.getLogger("flowstage.executors.ray.executor")

#: how long a Ray of our own keeps running after its last use, for worker output to arrive
_LOG_GRACE_SECONDS = 0.5
#: how many stage names' task options are kept (see RayExecutor._remote_for)
_MAX_REMOTES = 4096
#: stage resource name -> Ray task option
_TASK_OPTIONS = {"cpus": "num_cpus", "gpus": "num_gpus", "memory": "memory"}
#: stage resource name -> Ray node resource name
_NODE_RESOURCES = {"cpus": "CPU", "gpus": "GPU", "memory": "memory"}


class RayOptions(ClusterOptions):
    """Options of the ``ray`` executor."""

    num_cpus: int | None = Field(default=None, ge=0)
    num_gpus: int | None = Field(default=None, ge=0)
    resources: dict[str, float] = Field(default_factory=dict)
    log_to_driver: bool = True

    @field_validator("resources")
    @classmethod
    def _custom_only(cls, value: dict[str, float]) -> dict[str, float]:
        builtin = {"cpus": "num_cpus", "gpus": "num_gpus", "CPU": "num_cpus", "GPU": "num_gpus"}
        for key in value:
            if key in builtin:
                raise ValueError(
                    f"{key!r} is not a custom resource: use the option {builtin[key]!r}"
                )
            if key in ("memory", "object_store_memory"):
                raise ValueError(
                    f"{key!r} is not a custom resource: Ray measures the node's memory itself"
                )
        return value


# --- the driver side -----------------------------------------------------------------


class RayExecutor(ClusterExecutor):
    """Runs calls as Ray tasks (a fresh local Ray, or an existing cluster at ``address:``)."""

    name = "ray"
    Options = RayOptions
    options: RayOptions
    requires = ("ray",)
    extra = "ray"
    local_only = ("num_cpus", "num_gpus", "resources", "dashboard")
    machine = "node"
    remote_name, local_name = "Ray cluster", "Ray"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._ray: Any = None
        self._owned = False
        self._task_env: dict[str, Any] | None = None
        self._cpus = 0
        self._used = False
        self._remotes: dict[tuple[str, tuple[tuple[str, float], ...]], Any] = {}
        #: per event loop (runs in several threads may share the executor)
        self._watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Watcher] = (
            weakref.WeakKeyDictionary()
        )

    # lifecycle -----------------------------------------------------------------------

    def _start(self) -> None:
        ray = self.import_engine()
        opts = self.options
        if opts.address:
            try:
                probe(opts.address, opts.connect_timeout)
            except OSError as exc:
                msg = (
                    f"executor 'ray': cannot connect to the Ray cluster at {opts.address!r} within "
                    f"{opts.connect_timeout:g}s (option 'connect_timeout'): "
                    f"{type(exc).__name__}: {exc}"
                )
                raise ExecutorError(msg) from None
        if ray.is_initialized():
            self._attach_existing(ray)
        else:
            self._init(ray)
        self._ray = ray
        self.refresh()

    def _attach_existing(self, ray: Any) -> None:
        """This process is already connected to a Ray (Ray allows one): use it, leave it."""
        opts = self.options
        if opts.address and opts.address != "auto":
            # Ray reports the node's IP where the user may have written 127.0.0.1: compare ports.
            current = ray.get_runtime_context().gcs_address
            wanted = opts.address.removeprefix("ray://")
            if current.rpartition(":")[2] != wanted.rpartition(":")[2]:
                msg = (
                    "executor 'ray': this process is already connected to the Ray cluster "
                    f"at {current!r}, so it cannot connect to {opts.address!r} "
                    "(Ray allows one cluster per process)"
                )
                raise ExecutorError(msg)
        log.info("using the Ray this process is already connected to")
        self._owned = False
        if opts.env:
            self._task_env = {"env_vars": dict(opts.env)}

    def _init(self, ray: Any) -> None:
        opts = self.options
        kwargs: dict[str, Any] = {
            "logging_level": logging.WARNING,
            "log_to_driver": opts.log_to_driver,
        }
        env = dict(opts.env)
        if opts.address:
            address = opts.address
        else:
            address = "local"
            # Like a spawned process pool, workers of our own Ray see the driver's sys.path
            # (Ray itself only passes on the script's folder and the working directory).
            paths = driver_paths()
            if paths:
                env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), *paths]))
            kwargs["include_dashboard"] = opts.dashboard
            for key in ("num_cpus", "num_gpus"):
                if getattr(opts, key) is not None:
                    kwargs[key] = getattr(opts, key)
            if opts.resources:
                kwargs["resources"] = dict(opts.resources)
        if env:
            kwargs["runtime_env"] = {"env_vars": env}
        try:
            with quiet_token_notice(address == "local"):
                ray.init(address=address, **kwargs)
        except Exception as exc:  # noqa: BLE001 - Ray raises many kinds of errors while starting or connecting; all are reported
            where = (
                "start a local Ray"
                if address == "local"
                else f"connect to the Ray cluster at {address!r}"
            )
            msg = f"executor 'ray': could not {where}: {type(exc).__name__}: {exc}"
            if address != "local" and "auth" in f"{exc!r} {exc.__cause__!r}".lower():
                msg += (
                    "\n(the cluster uses token authentication: set RAY_AUTH_MODE=token, "
                    "and the cluster's token in RAY_AUTH_TOKEN or ~/.ray/auth_token)"
                )
            raise ExecutorError(msg) from None
        self._owned = True

    def _close(self) -> None:
        ray, owned = self._ray, self._owned
        self._ray, self._owned, self._task_env = None, False, None
        self._remotes.clear()
        self._watchers.clear()
        if ray is not None and owned:
            if self.options.log_to_driver and self._used:
                # Worker output reaches the driver through Ray's log monitor, a moment
                # after it was written; shutting down at once would drop the last lines.
                time.sleep(_LOG_GRACE_SECONDS)
            with contextlib.suppress(Exception):
                ray.shutdown()
        self._used = False

    def _read_capacities(self) -> None:
        self._cpus = int(self._ray.cluster_resources().get("CPU", 0))

    # work ----------------------------------------------------------------------------

    @property
    def parallelism(self) -> int:
        return max(1, self._cpus or self.options.num_cpus or os.cpu_count() or 1)

    def offers(self) -> list[dict[str, float]]:
        return [n.get("Resources") or {} for n in self._ray.nodes() if n.get("Alive")]

    def fits(self, wanted: dict[str, float], offer: dict[str, float]) -> bool:
        return all(offer.get(_NODE_RESOURCES.get(k, k), 0.0) >= v for k, v in wanted.items())

    def shown(self, offer: dict[str, float]) -> list[tuple[str, float]]:
        return [
            (k, v)
            for k, v in sorted(offer.items())
            if not k.startswith(("node:", "accelerator_type:")) and k != "object_store_memory"
        ]

    def cluster_hint(self) -> str:
        return "configure its nodes with `ray start` instead"

    def resource_hint(self) -> str:
        if self.options.address:
            return "start nodes with `ray start --num-gpus N --resources '{\"NAME\": N}'`"
        return "set the executor options 'num_cpus', 'num_gpus' or 'resources'"

    def _task_options(self, resources: Resources | None, label: str) -> dict[str, Any]:
        options: dict[str, Any] = {"name": label}
        if resources is not None:
            custom: dict[str, float] = {}
            for key, value in resources.requested().items():
                if key in _TASK_OPTIONS:
                    options[_TASK_OPTIONS[key]] = int(value) if key == "memory" else value
                else:
                    custom[key] = value
            if custom:
                options["resources"] = custom
        if self._task_env is not None:
            options["runtime_env"] = self._task_env
        return options

    async def submit(
        self,
        fn: Callable[..., Any],
        *args: Any,
        resources: Resources | None = None,
        label: str = "",
    ) -> Any:
        if self._ray is None:
            await asyncio.to_thread(self.start)
        self._used = True
        name = label or getattr(fn, "__name__", "call")  # the task's name, also in Ray's tools
        upstream = tuple(a for a in args if isinstance(a, RayHandle))
        packed = pack_call(fn, args, ref_of, ("ray",))
        call: Any
        if packed is None:
            call, values = fn, [a.value if isinstance(a, RayHandle) else a for a in args]
        else:
            call, values = packed
            if self.uploads_code:
                # On a node that has not run a task of the run, upstream values may be
                # instances of classes from the code sent with it: Ray unpickles the
                # call (which puts that code in place) before them.
                handles = len(upstream)
                call, values = (
                    UnpackedFirst(call, handles, tuple(values[handles:])),
                    values[:handles],
                )
        value, status = self._remote_for(resources, name).remote(call, *values)
        return RayHandle(status, value, name, upstream)

    def _remote_for(self, resources: Resources | None, label: str) -> Any:
        """The remote function with ``label``'s task options (built once per stage name
        and resource request: Ray's ``options()`` costs more than a small call)."""
        key = (label, tuple(resources.requested().items()) if resources is not None else ())
        remote = self._remotes.get(key)
        if remote is None:
            if len(self._remotes) >= _MAX_REMOTES:  # a long-lived executor that saw many stages
                self._remotes.clear()
            remote = self._remotes[key] = remote_function(self._ray).options(
                **self._task_options(resources, label)
            )
        return remote

    async def _get(self, ref: Any) -> Any:
        return await asyncio.wrap_future(ref.future())

    async def _drain(self, ref: Any) -> None:
        """Read a failed task's other return, so Ray does not log it as an unhandled error."""
        with contextlib.suppress(BaseException):
            await self._get(ref)

    def _cause(self, exc: BaseException) -> BaseException:
        """The innermost cause of a Ray task error (a dependency's failure arrives wrapped)."""
        ray = self._ray or __import__("ray")
        cause = exc
        while isinstance(cause, ray.exceptions.RayTaskError) and cause.cause is not None:
            cause = cause.cause
        return cause

    def _failure(self, handle: RayHandle, exc: BaseException) -> CallFailure:
        """What made ``handle``'s call fail, as the failure of the stage to blame."""
        cause = self._cause(exc)
        if isinstance(cause, CallFailure):
            return cause
        if self._unserializable(exc):
            # The call itself ended well (run_remote reports everything else as a
            # CallFailure): Ray could not serialize its result, or one it depends on.
            culprit = handle
            while True:
                upstream = next(
                    (up for up in culprit.upstream if self._failed_unserializable(up)), None
                )
                if upstream is None:
                    break
                culprit = upstream
            msg = (
                "its result cannot be serialized to leave the worker: "
                f"{type(cause).__name__}: {cause}"
            )
            return CallFailure(culprit.label, None, 1, "", ResultNotTransferable(msg))
        return CallFailure(handle.label, None, 1, str(exc), cause)

    def _unserializable(self, exc: BaseException) -> bool:
        """Whether ``exc`` says that Ray could not store a call's result."""
        ray = self._ray or __import__("ray")
        return isinstance(exc, ray.exceptions.RayTaskError) and not isinstance(
            self._cause(exc), (CallFailure, ray.exceptions.RayError)
        )

    def _failed_unserializable(self, handle: RayHandle) -> bool:
        """Whether ``handle``'s call has ended, its result unserializable (or one it
        depends on)."""
        try:
            self._ray.get(handle.status, timeout=0)
        except Exception as exc:  # noqa: BLE001 - any failure, or still running (a timeout)
            return self._unserializable(exc)
        return False

    async def wait(self, handle: Any) -> None:
        try:
            await self._get(handle.status)
        except Exception as exc:  # noqa: BLE001 - any Ray error of the call is the stage's failure
            await self._drain(handle.value)
            raise self._failure(handle, exc) from None
        finally:
            await self._upstream_done()

    async def _upstream_done(self) -> None:
        """A call ended (waited for, or its value fetched), so the calls it depended on
        did too: settle those that are watched now, and let their stages record it
        before the caller goes on (a run does not wait for the next poll to end)."""
        watcher = self._watchers.get(asyncio.get_running_loop())
        try:
            settled = watcher.check() if watcher is not None else 0
        except Exception as exc:  # noqa: BLE001 - the poll reports it; this call's own outcome stands
            log.debug("checking watched calls failed: %s", exc)
            return
        if settled:
            await asyncio.sleep(0)

    async def watch(self, handle: Any) -> None:
        """:meth:`wait`, noticed by a poll of every watched call at once (see
        :class:`Watcher`) rather than by a Ray callback of its own."""
        loop = asyncio.get_running_loop()
        watcher = self._watchers.get(loop)
        if watcher is None:
            watcher = self._watchers[loop] = Watcher(self._ray, self._failure)
        await watcher.watch(handle)

    async def result(self, handle: Any) -> Any:
        try:
            return await self._get(handle.value)
        except Exception as exc:  # noqa: BLE001 - any Ray error of the fetch is reported with the stage
            await self._drain(handle.status)
            failure = self._failure(handle, exc)
            if isinstance(self._cause(exc), CallFailure) or isinstance(
                failure.cause, ResultNotTransferable
            ):
                raise failure from None  # the call (or one it depends on) failed
            cause = failure.cause
            msg = (
                f"stage {handle.label!r}: its result could not be fetched from Ray: "
                f"{type(cause).__name__}: {cause}"
            )
            raise StageError(msg, stage=handle.label, traceback=failure.traceback) from cause
        finally:
            await self._upstream_done()

    def cancel(self, handles: Iterable[Any]) -> None:
        ray = self._ray
        if ray is None:
            return
        for handle in handles:
            if isinstance(handle, RayHandle):
                try:
                    ray.cancel(handle.status, force=True)
                except Exception as exc:  # noqa: BLE001 - best effort: cancel never raises
                    log.debug("cancelling %r failed: %s", handle, exc)

    def share(self, data: bytes) -> Shared | None:
        if len(data) <= SHARE_ABOVE:
            return None  # cheaper inside each task than as one more Ray argument
        if self._ray is None:
            self.start()
        # Passed as is (a ref inside an object), Ray does not fetch it for every task:
        # each worker loads it once per run.
        return Shared(SharedBytes(self._ray.put(data)))

    def cluster_memory(self) -> dict[str, Any] | None:
        """Objects owned by a detached actor of this Ray cluster."""
        if self._ray is None:
            return None
        return {
            "factory": "flowstage.executors.ray.memory:RayMemory",
            "name": "flowstage_object_store",
            "namespace": "flowstage",
        }

    def is_handle(self, value: Any) -> bool:
        return isinstance(value, RayHandle)

    def describe(self) -> str:
        where = self.options.address or "local"
        return f"ray ({where}, {self.parallelism} CPUs)"
