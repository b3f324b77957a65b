"""How values are pickled for the object store, and the errors that name what failed."""

from __future__ import annotations

from typing import Any

from flowstage.core.errors import ObjectStoreError


class Pickled:
    """A value with its pickle (protocol 5: large buffers such as NumPy data are kept
    out of band, as views, not copied) and its size in bytes."""

    __slots__ = ("buffers", "payload", "size", "type", "value")

    def __init__(self, value: Any, payload: bytes, buffers: list[memoryview]) -> None:
        self.value = value
        self.payload = payload
        self.buffers = buffers
        self.size = len(payload) + sum(b.nbytes for b in buffers)
        self.type = type_name(value)


def type_name(value: Any) -> str:
    cls = type(value)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def pickle_value(value: Any, key: str, where: str) -> Pickled:
    """Pickle ``value`` once: proves it can cross processes and measures it.

    :raises ObjectStoreError: the value cannot be pickled (naming key and stage)
    """
    import pickle

    # lazy: cloudpickle is needed only for what plain pickle refuses
    import cloudpickle

    buffers: list[pickle.PickleBuffer] = []
    try:
        payload = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
        raws = [b.raw() for b in buffers]
    except BufferError:  # a non-contiguous buffer: keep everything in band
        payload, raws = cloudpickle.dumps(value, protocol=5), []
    except Exception as exc:  # noqa: BLE001 - a value's own __reduce__ may raise anything
        raise unpicklable(key, where, value, exc) from None
    return Pickled(value, payload, raws)


def unpicklable(
    key: str, where: str, value: Any, exc: BaseException, serializer: str = "cloudpickle"
) -> ObjectStoreError:
    if serializer == "cloudpickle":
        what, hint = (
            "pickled",
            (
                "stored objects must be picklable to reach other workers (store what the "
                "object is built from, or pick a serializer that can write it)"
            ),
        )
    else:
        what, hint = (
            f"written by serializer {serializer!r}",
            "pick another serializer (default: cloudpickle)",
        )
    msg = (
        f"object_store.put({key!r}) in {where}: the value (a {type_name(value)}) cannot be "
        f"{what}: {type(exc).__name__}: {exc}; {hint}"
    )
    return ObjectStoreError(msg)


def unpickle(payload: Any, buffers: list[Any]) -> Any:
    import pickle

    return pickle.loads(payload, buffers=buffers)
