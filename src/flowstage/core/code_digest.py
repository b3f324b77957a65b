"""A digest of a stage's code: its function and the module-level code it uses, so that
editing the stage or a helper it calls gives its cache entries a new key."""

from __future__ import annotations

import hashlib
import inspect
import marshal
import types
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from flowstage.core.value_digest import value_digest

#: constants of a stage module whose values enter the digest
_CONSTANT_TYPES = (int, float, complex, str, bytes, bool, type(None))

_code_digests: weakref.WeakKeyDictionary[Any, bytes] = weakref.WeakKeyDictionary()


def code_digest(fn: Callable[..., Any]) -> bytes:
    """A digest of ``fn``'s code and of the module-level code it uses.

    Covered: the source of the function (its code object when the source is not on
    disk), its default values and the variables it closes over (``make(3)`` and
    ``make(5)`` differ), and, by the global names its code refers to (nested functions
    included), the functions and classes of the same module (recursively) and the
    module's constants (numbers, strings, tuples and sets of them). A default or closed-over
    value that is not a constant counts by :func:`value_digest`. Not covered: other
    modules (imported libraries, other modules of your package), module-level data
    that is not a constant, and anything reached through attributes of objects.

    :raises TypeError: a default or closed-over value is neither JSON nor picklable
    """
    try:
        return _code_digests[fn]
    except (KeyError, TypeError):
        pass
    digest = hashlib.blake2b(digest_size=16)
    seen: set[int] = set()
    for part in _code_parts(_unwrapped(fn), seen):
        digest.update(part)
        digest.update(b"\0")
    found = digest.digest()
    try:
        _code_digests[fn] = found
    except TypeError:  # an object without weak references is digested on every run
        pass
    return found


def _code_parts(obj: Any, seen: set[int]) -> Iterator[bytes]:
    """The byte strings that make up ``obj``'s code digest."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, types.MethodType):
        obj = obj.__func__
    if isinstance(obj, types.FunctionType):
        yield _source(obj)
        yield from _function_parts(obj, obj.__module__, seen)
    elif isinstance(obj, type):
        yield _source(obj)
        for member in vars(obj).values():
            function = getattr(member, "__func__", member)
            if isinstance(function, types.FunctionType):
                yield from _function_parts(function, obj.__module__, seen)
    elif callable(obj):  # an instance with __call__: its class's code
        yield from _code_parts(type(obj), seen)


def _function_parts(fn: types.FunctionType, module: str, seen: set[int]) -> Iterator[bytes]:
    """What ``fn``'s source does not show: the globals it uses, its default values
    (evaluated when the ``def`` ran) and the values of the variables it closes over."""
    yield from _globals_used(fn.__code__, fn.__globals__, module, seen)
    for i, default in enumerate(fn.__defaults__ or ()):
        yield from _value_parts(f"default {i}", default, module, seen)
    for name, default in sorted((fn.__kwdefaults__ or {}).items()):
        yield from _value_parts(f"default {name}", default, module, seen)
    for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=True):
        try:
            contents = cell.cell_contents
        except ValueError:  # a variable not assigned yet
            yield f"closure {name} empty".encode()
            continue
        yield from _value_parts(f"closure {name}", contents, module, seen)


def _value_parts(label: str, value: Any, module: str, seen: set[int]) -> Iterator[bytes]:
    """A default or closed-over value: a function or class of the module by its code,
    a constant by its repr, anything else by its value digest."""
    value = _unwrapped(value)
    if isinstance(value, (types.FunctionType, type)) and (
        getattr(value, "__module__", None) == module
    ):
        yield label.encode()
        yield from _code_parts(value, seen)
    elif _is_constant(value):
        yield f"{label}={_constant_repr(value)}".encode()
    else:
        try:
            yield label.encode() + b"~" + value_digest(value)
        except TypeError as exc:
            msg = f"{label} (a {type(value).__name__}): {exc}"
            raise TypeError(msg) from None


def _source(obj: Any) -> bytes:
    try:
        return inspect.getsource(obj).encode()
    except (OSError, TypeError):
        code = getattr(obj, "__code__", None)
        if code is not None:
            return marshal.dumps(code.replace(co_filename="", co_firstlineno=1))
        return f"{obj.__module__}.{obj.__qualname__}".encode()


def _names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _names(const)


def _globals_used(
    code: types.CodeType, namespace: Mapping[str, Any], module: str, seen: set[int]
) -> Iterator[bytes]:
    for name in sorted(set(_names(code))):
        if name not in namespace:
            continue
        value = _unwrapped(namespace[name])
        if isinstance(value, (types.FunctionType, type)):
            if getattr(value, "__module__", None) == module:
                yield name.encode()
                yield from _code_parts(value, seen)
        elif _is_constant(value):
            yield f"{name}={_constant_repr(value)}".encode()


def _unwrapped(value: Any) -> Any:
    """The function under decorators that keep it as ``__wrapped__`` (``functools.wraps``,
    ``lru_cache``)."""
    if not hasattr(value, "__wrapped__"):
        return value
    try:
        return inspect.unwrap(value)
    except ValueError:  # a cycle of __wrapped__: digest the object as it is
        return value


def _is_constant(value: Any) -> bool:
    if isinstance(value, _CONSTANT_TYPES):
        return True
    if isinstance(value, (tuple, frozenset, set)) and len(value) <= 1000:
        return all(_is_constant(v) for v in value)
    return False


def _constant_repr(value: Any) -> str:
    """A constant's repr, the same in every process: a set's items sorted (its own repr
    follows string hashing, which changes with each process's ``PYTHONHASHSEED``)."""
    if isinstance(value, (set, frozenset)):
        items = sorted(_constant_repr(v) for v in value)
        return f"{type(value).__name__}({{{', '.join(items)}}})"
    if isinstance(value, tuple):
        name = "" if type(value) is tuple else type(value).__name__  # a named tuple's
        return f"{name}({''.join(_constant_repr(v) + ', ' for v in value)})"
    return repr(value)
