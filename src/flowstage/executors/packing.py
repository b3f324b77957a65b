"""Calls packed into one pickle, for engines that serialize each task argument apart.

Ray serializes every argument of a task on its own (costing more than a small stage's
work), and the Dask scheduler unpickles task arguments (so they would need the user's
modules there). Both get a call as one ``bytes`` argument instead, followed by the
arguments the engine itself must see: the values of handles (which it resolves before
the task runs) and the objects shared once per run (see ``Executor.share``).

A call made of built-in data and stage tasks only (a chain's stages) is pickled by the
standard pickler, several times faster; anything else by cloudpickle, which sends
functions and classes of scripts by value.
"""

from __future__ import annotations

import io
import pickle
import threading
import types
from collections.abc import Callable
from typing import Any

import cloudpickle

from flowstage.core.calls import StageTask

#: run contexts up to this size travel inside each task (cheaper than one more engine
#: argument; Ray inlines task arguments up to about 100 KB); larger ones are shared
SHARE_ABOVE = 100_000


class Shared:
    """Something an executor keeps on its engine for a run; ``argument`` is what
    travels as a task argument in its place. (In a call that could not be packed, the
    engine's own serializer carries the whole object inside the call instead.)"""

    __slots__ = ("argument",)

    def __init__(self, argument: Any) -> None:
        self.argument = argument

    def load(self) -> bytes:
        """The shared bytes, inside a worker that received this object itself."""
        value = self.argument
        if isinstance(value, bytes):
            return value
        if hasattr(value, "load"):
            return value.load()  # type: ignore[no-any-return]
        return value.result()  # type: ignore[no-any-return]  # an engine future


def _flowstage_global(obj: Any) -> bool:
    """Whether ``obj`` is a module-level function or class of flowstage (or ``copyreg``,
    which pickling dataclasses calls): pickled by name at once, where cloudpickle would
    check every time that it can be imported."""
    module = getattr(obj, "__module__", None) or ""
    return (module == "copyreg" or module.startswith("flowstage.")) and "<" not in getattr(
        obj, "__qualname__", "<"
    )  # not a lambda or a local


class _NeedsEngine(Exception):
    """The call holds engine objects that only the engine's serializer may pickle."""


class _CallPickler(cloudpickle.Pickler):  # type: ignore[misc]  # cloudpickle is untyped
    def __init__(self, file: io.BytesIO, first_index: int, engine_modules: tuple[str, ...]) -> None:
        super().__init__(file, protocol=5)
        self.first_index = first_index
        self.engine_modules = engine_modules
        self.attachments: list[Any] = []

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, Shared):
            self.attachments.append(obj.argument)
            return (attached, (self.first_index + len(self.attachments) - 1,))
        kind = type(obj)
        if (kind is types.FunctionType or kind is type) and _flowstage_global(obj):
            return NotImplemented  # flowstage's own functions and classes: importable anywhere
        if kind.__module__.partition(".")[0] in self.engine_modules:
            raise _NeedsEngine  # object refs, futures, actor handles: the engine tracks them
        return super().reducer_override(obj)


_ATOMS = frozenset({str, bytes, int, float, bool, type(None)})


def _plain_data(values: tuple[Any, ...], budget: int = 64) -> bool:
    """Whether the standard pickler sends ``values`` as cloudpickle would: built-in data,
    and stage tasks that say so (nothing that may have to travel by value). Judged
    within ``budget`` objects: beyond that, checking costs more than it saves."""
    stack = list(values)
    while stack:
        budget -= 1
        if budget < 0:
            return False
        value = stack.pop()
        kind = type(value)
        if kind in _ATOMS:
            continue
        if kind is tuple or kind is list:
            stack.extend(value)
        elif kind is dict:
            stack.extend(value)
            stack.extend(value.values())
        elif kind is not StageTask or not value.pickles_plainly():
            return False
    return True


def pack_call(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    handle_argument: Callable[[Any], Any | None],
    engine_modules: tuple[str, ...],
) -> tuple[bytes, list[Any]] | None:
    """``(call, engine_arguments)`` for ``fn(*args)``, or None if only the engine's own
    serializer can send it (it holds engine objects, or something cloudpickle refuses).

    ``handle_argument(a)`` is what the engine must receive for a handle ``a`` (None for
    plain values); ``engine_modules`` are the top-level packages of engine objects.
    """
    passed = [handle_argument(a) for a in args]
    slots = tuple(i for i, value in enumerate(passed) if value is not None)
    plain = tuple(None if value is not None else a for a, value in zip(args, passed, strict=True))
    if _flowstage_global(fn) and _plain_data(plain):
        # The standard pickler is several times faster (a chain's submission is mostly this).
        return pickle.dumps((fn, plain, slots), protocol=5), [passed[i] for i in slots]
    buffer = io.BytesIO()
    pickler = _CallPickler(buffer, len(slots), engine_modules)
    try:
        pickler.dump((fn, plain, slots))
    except Exception:  # noqa: BLE001 - engine objects or unpicklable values: the engine's serializer decides
        return None
    return buffer.getvalue(), [*(passed[i] for i in slots), *pickler.attachments]


# --- in the workers ------------------------------------------------------------------

#: the engine arguments of the call being unpacked in this thread (see attached)
_unpacking = threading.local()


def unpack_call(call: bytes, values: tuple[Any, ...]) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """``(fn, args)`` of a packed call, given the engine arguments that came with it."""
    fn, plain, slots = _loads(call, values)
    return fn, _filled(plain, slots, values)


def _loads(
    call: bytes, arguments: tuple[Any, ...]
) -> tuple[Callable[..., Any], tuple[Any, ...], tuple[int, ...]]:
    """``(fn, plain, slots)`` of a packed call; ``arguments`` are the engine arguments
    that :func:`attached` finds while it is unpickled."""
    _unpacking.arguments = arguments
    try:
        return pickle.loads(call)  # type: ignore[no-any-return]
    finally:
        _unpacking.arguments = ()


def _filled(
    plain: tuple[Any, ...], slots: tuple[int, ...], values: tuple[Any, ...]
) -> tuple[Any, ...]:
    args = list(plain)
    # values may carry more than the slots: engine arguments attached to the call itself
    for position, value in zip(slots, values, strict=False):
        args[position] = value
    return tuple(args)


class UnpackedFirst:
    """A packed call that the engine unpickles itself, as its task's first argument: for
    an engine that unpickles arguments in order, the run's code (restored with the
    call's run context) is in place before the next arguments, which may hold instances
    of its classes, are unpickled. ``attachments`` are the call's engine-shared parts
    (they travel inside it); ``handles`` is how many engine arguments will follow."""

    __slots__ = ("attachments", "call", "handles")

    def __init__(self, call: bytes, handles: int, attachments: tuple[Any, ...] = ()) -> None:
        self.call = call
        self.handles = handles
        self.attachments = attachments

    def __reduce__(self) -> tuple[Any, ...]:
        return (_unpack_first, (self.call, self.handles, self.attachments))


class UnpackedCall:
    """What an :class:`UnpackedFirst` becomes in the worker; ``args(values)`` puts the
    engine arguments that followed it in their places."""

    __slots__ = ("fn", "plain", "slots")

    def __init__(
        self, fn: Callable[..., Any], plain: tuple[Any, ...], slots: tuple[int, ...]
    ) -> None:
        self.fn, self.plain, self.slots = fn, plain, slots

    def args(self, values: tuple[Any, ...]) -> tuple[Any, ...]:
        return _filled(self.plain, self.slots, values)


def _unpack_first(call: bytes, handles: int, attachments: tuple[Any, ...]) -> UnpackedCall:
    # attached() counts the engine arguments of handles first; they come later here
    return UnpackedCall(*_loads(call, (None,) * handles + tuple(attachments)))


def attached(index: int) -> Any:
    """Engine argument ``index`` of the call being unpacked (what a :class:`Shared`
    became: the engine delivers the shared data, or an object that loads it)."""
    return _unpacking.arguments[index]
