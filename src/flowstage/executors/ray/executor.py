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
import socket
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, cast

from pydantic import Field, field_validator

from flowstage.core.calls import CallFailure, call_failure, run_batch
from flowstage.core.errors import ExecutorError, ResultNotTransferable, StageError
from flowstage.core.executor import Executor
from flowstage.executors.common import (
    ClusterOptions,
    batch_not_transferable,
    unpicklable,
)
from flowstage.executors.packing import (
    SHARE_ABOVE,
    Shared,
    UnpackedCall,
    UnpackedFirst,
    pack_call,
    unpack_call,
)

if TYPE_CHECKING:
    from flowstage.core.models import Resources, Workflow

log = logging.getLogger("flowstage.executors.ray.executor")

#: how long the cluster's CPU count is reused before it is read again
_REFRESH_SECONDS = 5.0
#: how long a Ray of our own keeps running after its last use, for worker output to arrive
_LOG_GRACE_SECONDS = 0.5
#: how soon, and how seldom at most, calls nobody waits for are checked for their end
#: (see _Watcher)
WATCH_SECONDS, WATCH_MAX_SECONDS = 0.05, 1.0
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


# --- what runs on the workers --------------------------------------------------------


def run_remote(call: Any, *values: Any) -> tuple[Any, None]:
    """Task entry on a worker: ``(fn(*args), status)``.

    ``call`` is the function itself (``values`` are its arguments), or a call packed by
    :func:`~flowstage.executors.packing.pack_call`. Every failure here is a
    ``CallFailure``, so one that is not comes from Ray storing the result (see
    ``RayExecutor._failure``). A batch's result is checked here, to name the map item
    whose result cannot be serialized.
    """
    try:
        if isinstance(call, bytes):
            fn, args = unpack_call(call, values)
        elif type(call) is UnpackedCall:
            fn, args = call.fn, call.args(values)
        else:
            fn, args = call, values
        value = fn(*args)
    except (CallFailure, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - unpacking, a function that is not a stage call, CancelledError
        raise call_failure(_task_name(), exc) from None
    if fn is run_batch:
        problem = unpicklable(value)
        if problem is not None:
            raise batch_not_transferable(_task_name(), args[1], value, problem)
    return value, None


def _task_name() -> str:
    import ray

    return ray.get_runtime_context().get_task_name() or "call"


class SharedBytes:
    """Bytes kept in Ray's object store; ``load()`` fetches them inside a task."""

    __slots__ = ("ref",)

    def __init__(self, ref: Any) -> None:
        self.ref = ref

    def load(self) -> bytes:
        import ray

        return cast(bytes, ray.get(self.ref))


_remote_function: Any = None


def _remote(ray: Any) -> Any:
    """The one remote function every call goes through (the target is an argument)."""
    global _remote_function
    if _remote_function is None:
        _remote_function = ray.remote(num_returns=2)(run_remote)
    return _remote_function


# --- the driver side -----------------------------------------------------------------


def _ref_of(value: Any) -> Any | None:
    return value.value if isinstance(value, RayHandle) else None


class RayHandle:
    """A submitted call: its status and value refs, the stage it belongs to, and the
    handles among its arguments (the calls it waits for)."""

    __slots__ = ("label", "status", "upstream", "value")

    def __init__(
        self, status: Any, value: Any, label: str, upstream: tuple[RayHandle, ...] = ()
    ) -> None:
        self.status = status
        self.value = value
        self.label = label
        self.upstream = upstream

    def __repr__(self) -> str:
        return f"RayHandle({self.label!r}, {self.value!r})"


def _format_amount(name: str, value: float) -> str:
    if name in ("memory", "object_store_memory"):
        for unit in ("B", "KB", "MB", "GB", "TB"):
            if value < 1000 or unit == "TB":
                return f"{name}={value:.3g}{unit}"
            value /= 1000
    return f"{name}={value:g}"


def _probe(address: str, timeout: float) -> None:
    """Wait until a Ray server answers at ``address`` (``host:port`` or
    ``ray://host:port``), for at most ``timeout`` seconds (a cluster that is still
    starting gets that long). Ray's own connect retries for about 20 s whatever it finds.

    :raises OSError: nothing accepted a connection in time, or what did is not a gRPC
        server (Ray's GCS and Ray Client server both are)
    """
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return
    host = host.strip("[]") or "127.0.0.1"
    deadline = time.monotonic() + timeout
    pause = 0.05
    while True:
        left = deadline - time.monotonic()
        try:
            with socket.create_connection((host, int(port)), timeout=max(left, 0.01)):
                break
        except OSError:
            if time.monotonic() + pause >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 1.0)
    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        return  # a TLS server would not answer the plain HTTP/2 greeting below
    left = max(deadline - time.monotonic(), 0.5)
    try:
        answered = _answers_http2(host, int(port), left)
    except OSError:
        answered = False
    if not answered:
        raise OSError(
            "something listens there, but it does not answer as a Ray server (gRPC over HTTP/2)"
        )


#: what an HTTP/2 client sends first: the connection preface and an empty SETTINGS frame
_HTTP2_GREETING = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _answers_http2(host: str, port: int, timeout: float) -> bool:
    """Whether the server at ``host:port`` answers an HTTP/2 greeting with its SETTINGS
    frame, as gRPC servers (Ray's GCS, the Ray Client server) do."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(_HTTP2_GREETING)
        header = b""
        while len(header) < 9:
            chunk = sock.recv(9 - len(header))
            if not chunk:
                return False
            header += chunk
    return header[3] == 4  # the frame type of SETTINGS


@contextlib.contextmanager
def _quiet_token_notice(quiet: bool) -> Iterator[None]:
    """Keep Ray's notice that it enabled token authentication off the terminal while it
    starts a Ray of our own (quiet logs; the token protects that Ray all the same)."""
    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = logger.level
    if quiet:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _driver_paths() -> list[str]:
    """Folders on the driver's ``sys.path`` that a fresh interpreter would not have
    (the interpreter's own library and site-packages folders are left out)."""
    import sys

    prefixes = tuple(
        {os.path.realpath(p) + os.sep for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    )
    paths = []
    for entry in sys.path:
        path = os.path.realpath(entry or os.curdir)
        if os.path.isdir(path) and not (path + os.sep).startswith(prefixes) and path not in paths:
            paths.append(path)
    return paths


class _Watcher:
    """Notices the end of calls nothing waits for yet (stages whose dependents Ray
    already chains), for their records: with one ``ray.wait`` over all of them, at
    growing intervals (``WATCH_SECONDS`` up to ``WATCH_MAX_SECONDS``), and whenever a
    call the driver waits for or fetches ends.

    A Ray callback per call (``ObjectRef.future()``) runs Python on the thread that
    also resolves the next task's arguments: on a chain of small stages those callbacks
    slowed the chain itself. One event loop's watcher serves every run on that loop.
    """

    def __init__(
        self, ray: Any, failure: Callable[[RayHandle, BaseException], CallFailure]
    ) -> None:
        self.ray = ray
        self.failure = failure
        self.pending: dict[Any, tuple[RayHandle, asyncio.Future[None]]] = {}
        self.poller: asyncio.Task[None] | None = None

    async def watch(self, handle: RayHandle) -> None:
        """Return when ``handle``'s call has ended; raise its failure."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending[handle.status] = (handle, done)
        if self.poller is None or self.poller.done():
            self.poller = asyncio.ensure_future(self._poll())
        try:
            await done
        finally:
            self.pending.pop(handle.status, None)

    async def _poll(self) -> None:
        # Each poll costs a few microseconds per watched call: poll less often as the
        # calls run longer (their records only need to follow at the pace of progress).
        interval = WATCH_SECONDS
        try:
            while self.pending:
                await asyncio.sleep(interval)
                self.check()
                interval = min(interval * 2, WATCH_MAX_SECONDS)
        except Exception as exc:  # noqa: BLE001 - Ray itself failed (shut down, disconnected): so did the calls
            for handle, done in list(self.pending.values()):
                if not done.done():
                    done.set_exception(self.failure(handle, exc))
        finally:
            self.poller = None  # the task refers to its loop: let the loop go

    def check(self) -> int:
        """Settle every watched call that has ended; how many there were."""
        if not self.pending:
            return 0
        refs = list(self.pending)
        # Statuses are tiny; fetched with the wait, so that get(timeout=0) finds them.
        ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        if not ready:
            return 0
        try:
            self.ray.get(ready, timeout=0)  # statuses are None: one call for all that succeeded
            failed = False
        except Exception:  # noqa: BLE001 - some call failed: find which, one by one below
            failed = True
        for ref in ready:
            handle, done = self.pending.pop(ref)
            if done.done():
                continue
            error = self._error(ref) if failed else None
            if error is None:
                done.set_result(None)
            else:
                with contextlib.suppress(Exception):  # read, so Ray does not log it as unhandled
                    self.ray.get(handle.value, timeout=0)
                done.set_exception(self.failure(handle, error))
        return len(ready)

    def _error(self, ref: Any) -> BaseException | None:
        try:
            self.ray.get(ref, timeout=0)
        except Exception as exc:  # noqa: BLE001 - any Ray error of the call is the stage's failure
            return exc
        return None


class RayExecutor(Executor):
    """Runs calls as Ray tasks (a fresh local Ray, or an existing cluster at ``address:``)."""

    name = "ray"
    Options = RayOptions
    options: RayOptions
    requires = ("ray",)
    extra = "ray"
    batch_seconds = 0.1
    pipelines = True
    shares_context = True

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        local_only = [
            k
            for k in ("num_cpus", "num_gpus", "resources", "dashboard")
            if k in self.options.model_fields_set
        ]
        if self.options.address and local_only:
            names = ", ".join(repr(k) for k in local_only)
            msg = (
                f"executor 'ray': option{'s' * (len(local_only) > 1)} {names} only apply to a Ray "
                f"started by flowstage, not to the cluster at {self.options.address!r} (configure "
                f"its nodes with `ray start` instead)"
            )
            raise ExecutorError(msg)
        self._ray: Any = None
        self._owned = False
        self._task_env: dict[str, Any] | None = None
        self._cpus = 0
        self._refreshed = 0.0
        self._used = False
        self._remotes: dict[tuple[str, tuple[tuple[str, float], ...]], Any] = {}
        #: per event loop (runs in several threads may share the executor)
        self._watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watcher] = (
            weakref.WeakKeyDictionary()
        )

    # lifecycle -----------------------------------------------------------------------

    def _start(self) -> None:
        try:
            import ray
        except ImportError as exc:
            msg = f"the ray executor needs the 'ray' package ({exc}): pip install 'flowstage[ray]'"
            raise ExecutorError(msg) from None
        opts = self.options
        if opts.address:
            try:
                _probe(opts.address, opts.connect_timeout)
            except OSError as exc:
                msg = (
                    f"executor 'ray': cannot connect to the Ray cluster at {opts.address!r} within "
                    f"{opts.connect_timeout:g}s (option 'connect_timeout'): {type(exc).__name__}: {exc}"
                )
                raise ExecutorError(msg) from None
        if ray.is_initialized():
            self._attach_existing(ray)
        else:
            self._init(ray)
        self._ray = ray
        self._refresh()

    def _attach_existing(self, ray: Any) -> None:
        """This process is already connected to a Ray (Ray allows one): use it, leave it."""
        opts = self.options
        if opts.address and opts.address != "auto":
            # Ray reports the node's IP where the user may have written 127.0.0.1: compare ports.
            current = ray.get_runtime_context().gcs_address
            wanted = opts.address.removeprefix("ray://")
            if current.rpartition(":")[2] != wanted.rpartition(":")[2]:
                msg = (
                    f"executor 'ray': this process is already connected to the Ray cluster at {current!r}, "
                    f"so it cannot connect to {opts.address!r} (Ray allows one cluster per process)"
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
            paths = _driver_paths()
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
            with _quiet_token_notice(address == "local"):
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
                    "\n(the cluster uses token authentication: set RAY_AUTH_MODE=token, and the cluster's "
                    "token in RAY_AUTH_TOKEN or ~/.ray/auth_token)"
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

    def _refresh(self) -> None:
        self._cpus = int(self._ray.cluster_resources().get("CPU", 0))
        self._refreshed = time.monotonic()

    # work ----------------------------------------------------------------------------

    @property
    def parallelism(self) -> int:
        return max(1, self._cpus or self.options.num_cpus or os.cpu_count() or 1)

    def check_resources(self, workflow: Workflow) -> list[str]:
        started_here = not self.started
        if started_here:
            self.start()
        elif time.monotonic() - self._refreshed > _REFRESH_SECONDS:
            self._refresh()
        if not any(s.resources.requested() for s in workflow.spec.stages if s.resources):
            return []
        nodes = [n.get("Resources") or {} for n in self._ray.nodes() if n.get("Alive")]
        problems = [
            p
            for stage in workflow.spec.stages
            if (p := self._unsatisfiable(stage.name, stage.resources, nodes)) is not None
        ]
        if problems and started_here:
            self.close()
        return problems

    def _unsatisfiable(
        self, stage: str, resources: Resources | None, nodes: list[dict[str, float]]
    ) -> str | None:
        wanted = {k: v for k, v in (resources.requested() if resources else {}).items() if v}
        if not wanted:
            return None
        needs = {_NODE_RESOURCES.get(k, k): v for k, v in wanted.items()}
        if any(all(node.get(k, 0.0) >= v for k, v in needs.items()) for node in nodes):
            return None
        request = ", ".join(_format_amount(k, v) for k, v in wanted.items())
        shown = []
        for node in nodes:
            parts = [
                _format_amount(k, v)
                for k, v in sorted(node.items())
                if not k.startswith(("node:", "accelerator_type:")) and k != "object_store_memory"
            ]
            shown.append(", ".join(parts) or "nothing")
        have = "; ".join(sorted(set(shown))) or "no nodes"
        where = (
            f"the Ray cluster at {self.options.address}"
            if self.options.address
            else "the local Ray"
        )
        hint = (
            "start nodes with `ray start --num-gpus N --resources '{\"NAME\": N}'`"
            if self.options.address
            else "set the executor options 'num_cpus', 'num_gpus' or 'resources'"
        )
        return (
            f"stage {stage!r}: requests {request}, but no node of {where} has that much "
            f"(nodes offer: {have}); {hint}"
        )

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
        packed = pack_call(fn, args, _ref_of, ("ray",))
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
            remote = self._remotes[key] = _remote(self._ray).options(
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
            msg = f"its result cannot be serialized to leave the worker: {type(cause).__name__}: {cause}"
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
        :class:`_Watcher`) rather than by a Ray callback of its own."""
        loop = asyncio.get_running_loop()
        watcher = self._watchers.get(loop)
        if watcher is None:
            watcher = self._watchers[loop] = _Watcher(self._ray, self._failure)
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
            msg = f"stage {handle.label!r}: its result could not be fetched from Ray: {type(cause).__name__}: {cause}"
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
