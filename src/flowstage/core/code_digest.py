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

#: constants of a stage module whose values enter the digest
_CONSTANT_TYPES = (int, float, complex, str, bytes, bool, type(None))

_code_digests: weakref.WeakKeyDictionary[Any, bytes] = weakref.WeakKeyDictionary()


def code_digest(fn: Callable[..., Any]) -> bytes:
    """A digest of ``fn``'s code and of the module-level code it uses.

    Covered: the source of the function (its code object when the source is not on
    disk), and, by the global names its code refers to (nested functions included), the
    functions and classes of the same module (recursively) and the module's constants
    (numbers, strings, tuples of them). Not covered: other modules (imported
    libraries, other modules of your package), module-level data that is not a
    constant, and anything reached through attributes of objects.
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
        yield from _globals_used(obj.__code__, obj.__globals__, obj.__module__, seen)
    elif isinstance(obj, type):
        yield _source(obj)
        for member in vars(obj).values():
            function = getattr(member, "__func__", member)
            if isinstance(function, types.FunctionType):
                yield from _globals_used(
                    function.__code__, function.__globals__, obj.__module__, seen
                )
    elif callable(obj):  # an instance with __call__: its class's code
        yield from _code_parts(type(obj), seen)


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
            yield f"{name}={value!r}".encode()


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
    if isinstance(value, (tuple, frozenset)) and len(value) <= 1000:
        return all(_is_constant(v) for v in value)
    return False
