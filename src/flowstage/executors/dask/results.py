"""Call results as they stay on Dask workers.

Dask serializes a result only when it moves: to a worker that runs a dependent, or to
the driver. A result that cannot be serialized there, or not unpickled at the other end
(a class whose module that worker lacks), leaves the task that needs it waiting forever:
the run would hang. So a call's value stays inside a :class:`Kept`, which Dask serializes with the
functions here: where serializing or unpickling the value fails, it arrives as that
failure, naming the stage (and the map item), and the receiving side raises it with
:func:`opened`. A value that never moves is never serialized, as with Dask alone.
"""

from __future__ import annotations

import contextlib
import pickle
import sys
from collections.abc import Callable
from typing import Any

from flowstage.core.calls import CallFailure
from flowstage.core.errors import ResultNotTransferable
from flowstage.executors.common import (
    batch_not_transferable,
    not_transferable,
)


class Kept:
    """The value of stage ``stage``'s call (a batch of map items from ``batch_start`` if
    that is not None), or why it could not be moved (``failure``)."""

    __slots__ = ("batch_start", "failure", "retry", "stage", "value")

    def __init__(
        self,
        value: Any,
        stage: str,
        batch_start: int | None = None,
        failure: CallFailure | None = None,
        retry: Callable[[], Any] | None = None,
    ) -> None:
        self.value = value
        self.stage = stage
        self.batch_start = batch_start
        self.failure = failure
        #: unpickles the value again (it failed on arrival: its code may come with the task)
        self.retry = retry

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        # Dask pickles a value only where its own serializers (below) do not apply. A
        # value that cannot be pickled raises, as it would without this wrapper.
        from distributed.protocol.pickle import dumps

        if self.failure is not None:
            return (_failed, (self.failure,))
        buffers: list[Any] = []  # large buffers (arrays) out of band with protocol 5
        keep = buffers.append if isinstance(protocol, int) and protocol >= 5 else None
        return (_restored, (dumps(self.value, buffer_callback=keep), self.stage, buffers))

    def _not_transferable(self, problem: Exception) -> CallFailure:
        if self.batch_start is None:
            return not_transferable(self.stage, self.value, problem)
        return batch_not_transferable(self.stage, self.batch_start, self.value, problem)

    def __sizeof__(self) -> int:
        # What Dask counts for this value (memory limits, spilling, placement).
        from dask.sizeof import sizeof

        return int(sizeof(self.value)) + 64


def _restored(data: bytes, stage: str, buffers: list[Any]) -> Kept:
    # lazy: Dask is an optional extra, imported only when it runs
    from distributed.protocol.pickle import loads

    return _arrived(stage, lambda: loads(data, buffers=buffers))


def _arrived(stage: str, load: Callable[[], Any]) -> Kept:
    """The value ``load()`` gives, or why it failed, with ``load`` kept to try again
    once the task brought its code (see :func:`opened`)."""
    try:
        return Kept(load(), stage)
    except Exception as exc:  # noqa: BLE001 - a module or class this process lacks, typically
        msg = (
            f"its result cannot be unpickled where it is needed: {type(exc).__name__}: {exc} "
            "(each worker needs the modules its classes come from)"
        )
        return Kept(
            None,
            stage,
            failure=CallFailure(stage, None, 1, "", ResultNotTransferable(msg)),
            retry=load,
        )


def _failed(failure: CallFailure) -> Kept:
    return Kept(None, failure.stage, failure=failure)


def opened(value: Any) -> Any:
    """``value``, or the value a :class:`Kept` holds (unpickled once more if that failed
    when it arrived: the task's own code is in place now).

    :raises CallFailure: the call's value could not be moved here
    """
    if type(value) is not Kept:
        return value
    if value.failure is None:
        return value.value
    if value.retry is not None:
        with contextlib.suppress(Exception):  # still missing: the failure on arrival says why
            return value.retry()
    raise value.failure


def opened_within(value: Any) -> Any:
    """:func:`opened`, also for values inside lists, tuples and dicts (Dask resolves
    futures there in the arguments of a call it was given unpacked)."""
    kind = type(value)
    if kind is list or kind is tuple:
        return kind(opened_within(item) for item in value)
    if kind is dict:
        return {key: opened_within(item) for key, item in value.items()}
    return opened(value)


def register_with_dask() -> None:
    """Let Dask send a :class:`Kept` value as it sends the value itself (arrays and
    frames as buffers of their own, without copies); pickling it is the fallback.

    Done on import where Dask is loaded already (a worker unpickling a result), and by
    the executor when it starts: flowstage must not import Dask before it is used.
    """
    # lazy: Dask is an optional extra, imported only when it runs
    from distributed.protocol.serialize import (
        dask_deserialize,
        dask_serialize,
        deserialize,
        serialize,
    )

    def dumps(kept: Kept, context: Any = None) -> tuple[dict[str, Any], list[Any]]:
        if kept.failure is None:
            try:
                header, frames = serialize(kept.value, on_error="raise")
                return {"stage": kept.stage, "value": header}, frames
            except Exception as exc:
                if context is None:
                    raise  # spilling to disk: Dask keeps the value in memory instead
                # Moving to another process: arrive as the failure (Dask would retry).
                problem = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
                kept = Kept(None, kept.stage, failure=kept._not_transferable(problem))
        return {"stage": kept.stage, "failure": pickle.dumps(kept.failure)}, []

    def loads(header: dict[str, Any], frames: list[Any]) -> Kept:
        if "failure" in header:
            return _failed(pickle.loads(header["failure"]))
        return _arrived(header["stage"], lambda: deserialize(header["value"], frames))

    dask_serialize.register(Kept)(dumps)
    dask_deserialize.register(Kept)(loads)


if sys.modules.get("distributed.protocol.serialize") is not None:
    register_with_dask()
