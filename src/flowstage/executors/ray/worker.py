"""What runs in Ray workers: the task entry and the bytes a run shares through Ray."""

from __future__ import annotations

import logging
from typing import Any, cast

from flowstage.core.calls import CallFailure, call_failure, run_batch
from flowstage.executors.common import (
    batch_not_transferable,
    unpicklable,
)
from flowstage.executors.packing import (
    UnpackedCall,
    unpack_call,
)

log = logging.getLogger("flowstage.executors.ray.worker")


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
    # lazy: Ray is an optional extra, imported only when it runs
    import ray

    return ray.get_runtime_context().get_task_name() or "call"


class SharedBytes:
    """Bytes kept in Ray's object store; ``load()`` fetches them inside a task."""

    __slots__ = ("ref",)

    def __init__(self, ref: Any) -> None:
        self.ref = ref

    def load(self) -> bytes:
        # lazy: Ray is an optional extra, imported only when it runs
        import ray

        return cast(bytes, ray.get(self.ref))


_remote_function: Any = None


def remote_function(ray: Any) -> Any:
    """The one remote function every call goes through (the target is an argument)."""
    global _remote_function
    if _remote_function is None:
        _remote_function = ray.remote(num_returns=2)(run_remote)
    return _remote_function
