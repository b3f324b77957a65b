"""Call results as they stay on Dask workers.

Dask serializes a result only when it moves: to a worker that runs a dependent, or to
the driver. A result that cannot be serialized there, or not unpickled at the other end
(a class whose module that worker lacks), makes Dask retry the transfer forever: the run
would hang. So a call's value stays inside a :class:`Kept`, which Dask serializes with the
functions here: where serializing or unpickling the value fails, it arrives as that
failure, naming the stage (and the map item), and the receiving side raises it with
:func:`opened`. A value that never moves is never serialized, as with Dask alone.
"""

from __future__ import annotations

import pickle
import sys
from typing import Any

from flowstage.core.calls import CallFailure
from flowstage.executors.common import (
    ResultNotTransferable,
    batch_not_transferable,
    not_transferable,
)


class Kept:
    """The value of stage ``stage``'s call (a batch of map items from ``batch_start`` if
    that is not None), or why it could not be moved (``failure``)."""

    __slots__ = ("batch_start", "failure", "stage", "value")

    def __init__(self, value: Any, stage: str, batch_start: int | None = None,
                 failure: CallFailure | None = None) -> None:
        self.value = value
        self.stage = stage
        self.batch_start = batch_start
        self.failure = failure

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        if self.failure is not None:
            return (_failed, (self.failure,))
        # With protocol 5, large buffers (arrays) stay out of the value's pickle: Dask
        # sends them as frames of their own. (Dask pickles with protocol 4 at times.)
        buffers: list[pickle.PickleBuffer] = []
        keep = buffers.append if isinstance(protocol, int) and protocol >= 5 else None
        try:
            data = pickle.dumps(self.value, protocol=5, buffer_callback=keep)
        except Exception:  # noqa: BLE001 - any object may refuse pickling its own way; try cloudpickle
            buffers.clear()
            import cloudpickle

            try:
                data = cloudpickle.dumps(self.value, protocol=5, buffer_callback=keep)
            except Exception as exc:  # noqa: BLE001 - whatever stops cloudpickle is why it cannot move
                return (_failed, (self._not_transferable(exc),))
        return (_restored, (data, self.stage, buffers))

    def _not_transferable(self, problem: Exception) -> CallFailure:
        if self.batch_start is None:
            return not_transferable(self.stage, self.value, problem)
        return batch_not_transferable(self.stage, self.batch_start, self.value, problem)

    def __sizeof__(self) -> int:
        # What Dask counts for this value (memory limits, spilling, placement).
        from dask.sizeof import sizeof

        return int(sizeof(self.value)) + 64


def _restored(data: bytes, stage: str, buffers: list[Any]) -> Kept:
    try:
        return Kept(pickle.loads(data, buffers=buffers), stage)
    except Exception as exc:  # noqa: BLE001 - a module or class this process lacks, typically
        return _cannot_unpickle(stage, exc)


def _cannot_unpickle(stage: str, exc: Exception) -> Kept:
    msg = (f"its result cannot be unpickled where it is needed: {type(exc).__name__}: {exc} "
           "(each worker needs the modules its classes come from)")
    return Kept(None, stage, failure=CallFailure(stage, None, 1, "", ResultNotTransferable(msg)))


def _failed(failure: CallFailure) -> Kept:
    return Kept(None, failure.stage, failure=failure)


def opened(value: Any) -> Any:
    """``value``, or the value a :class:`Kept` holds.

    :raises CallFailure: the call's value could not be moved here
    """
    if type(value) is not Kept:
        return value
    if value.failure is not None:
        raise value.failure
    return value.value


def register_with_dask() -> None:
    """Let Dask send a :class:`Kept` value as it sends the value itself (arrays and
    frames as buffers of their own, without copies); pickling it is the fallback.

    Done on import where Dask is loaded already (a worker unpickling a result), and by
    the executor when it starts: flowstage must not import Dask before it is used.
    """
    from distributed.protocol.serialize import (
        dask_deserialize,
        dask_serialize,
        deserialize,
        serialize,
    )

    def dumps(kept: Kept) -> tuple[dict[str, Any], list[Any]]:
        if kept.failure is None:
            try:
                header, frames = serialize(kept.value, on_error="raise")
                return {"stage": kept.stage, "value": header}, frames
            except Exception as exc:  # noqa: BLE001 - whatever stops Dask is why it cannot move
                kept = Kept(None, kept.stage, failure=kept._not_transferable(exc))
        return {"stage": kept.stage, "failure": pickle.dumps(kept.failure)}, []

    def loads(header: dict[str, Any], frames: list[Any]) -> Kept:
        if "failure" in header:
            return _failed(pickle.loads(header["failure"]))
        try:
            return Kept(deserialize(header["value"], frames), header["stage"])
        except Exception as exc:  # noqa: BLE001 - a module or class this process lacks, typically
            return _cannot_unpickle(header["stage"], exc)

    dask_serialize.register(Kept)(dumps)
    dask_deserialize.register(Kept)(loads)


if sys.modules.get("distributed.protocol.serialize") is not None:
    register_with_dask()
