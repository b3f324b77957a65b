"""Stage targets: import strings resolved once per process, and their signatures.

A target is imported once per process and cached (never reloaded), so module-level state
of a stage module survives between calls, and map items pay nothing for the import.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import threading
import typing
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from pydantic import ValidationError

from flowstage.core.errors import TargetError

_resolved: dict[str, Callable[..., Any]] = {}
_import_lock = threading.RLock()


def add_search_paths(paths: Iterable[str]) -> None:
    """Put folders on ``sys.path`` (first) so targets and ``user_modules`` import from them."""
    for path in paths:
        if path and path not in sys.path:
            sys.path.insert(0, path)
            importlib.invalidate_caches()


def resolve_target(
    target: str | Callable[..., Any], search_paths: Iterable[str] = ()
) -> Callable[..., Any]:
    """The callable named by ``target`` (``package.module.function`` or ``module:attr.attr``).

    :raises TargetError: the module does not import, the attribute is missing, or the
        object is not callable
    """
    if not isinstance(target, str):
        if not callable(target):
            raise TargetError(f"expected a callable, got {type(target).__name__}")
        return target
    found = _resolved.get(target)
    if found is not None:
        return found
    with _import_lock:
        add_search_paths(search_paths)
        obj = import_target(target)
        _resolved[target] = obj
        return obj


def import_target(target: str) -> Callable[..., Any]:
    """The callable named by ``target``, imported now (not cached here).

    :raises TargetError: as :func:`resolve_target`
    """
    with _import_lock:
        obj = _import(target)
    if not callable(obj):
        raise TargetError(f"{target!r} is a {type(obj).__name__}, not a callable")
    return cast("Callable[..., Any]", obj)


def _import(target: str) -> Any:
    if ":" in target:
        module_name, _, attrs = target.partition(":")
        return _getattrs(_import_module(module_name, target), attrs.split("."), target)
    parts = target.split(".")
    if len(parts) < 2:
        raise TargetError(f"{target!r} is not an import string: expected 'package.module.function'")
    # The longest importable prefix is the module; the rest are attributes.
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if (
                exc.name is not None
                and module_name != exc.name
                and not module_name.startswith(exc.name + ".")
            ):
                raise TargetError(f"importing {module_name!r} failed: {_describe(exc)}") from exc
            continue
        except Exception as exc:
            raise TargetError(f"importing {module_name!r} failed: {_describe(exc)}") from exc
        return _getattrs(module, parts[split:], target)
    raise TargetError(f"no module named {parts[0]!r} (while importing {target!r})")


def _import_module(name: str, target: str) -> Any:
    try:
        return importlib.import_module(name)
    except Exception as exc:
        raise TargetError(f"importing {name!r} failed: {_describe(exc)}") from exc


def _getattrs(obj: Any, attrs: list[str], target: str) -> Any:
    for attr in attrs:
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            where = getattr(obj, "__name__", repr(obj))
            raise TargetError(
                f"{where!r} has no attribute {attr!r} (while importing {target!r})"
            ) from None
    return obj


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class Signature:
    """What flowstage needs to know about a stage function's parameters."""

    positional: tuple[str, ...]  # names of parameters that can be given by position
    required: tuple[str, ...]  # parameters without default that are not *args/**kwargs
    keyword: frozenset[str]  # every parameter that can be given by name
    var_positional: bool
    var_keyword: bool
    annotations: Mapping[str, Any]
    is_async: bool

    def accepts_positional(self, count: int) -> bool:
        return self.var_positional or count <= len(self.positional)

    def filter_kwargs(self, values: Mapping[str, Any], skip: Iterable[str] = ()) -> dict[str, Any]:
        """The entries of ``values`` this function takes by name."""
        skipped = set(skip)
        if self.var_keyword:
            return {k: v for k, v in values.items() if k not in skipped}
        return {k: v for k, v in values.items() if k in self.keyword and k not in skipped}


#: weak: a function sent by value arrives as a new object in every run, and must not be
#: kept alive (with what it captured) after its run
_signatures: weakref.WeakKeyDictionary[Any, Signature] = weakref.WeakKeyDictionary()


def signature_of(fn: Callable[..., Any]) -> Signature:
    """Inspect ``fn`` (cached while it lives); callables without a readable signature
    accept anything."""
    try:
        return _signatures[fn]
    except (KeyError, TypeError):
        pass
    found = _inspect(fn)
    try:
        _signatures[fn] = found
    except TypeError:  # callables that cannot be weakly referenced are inspected each time
        pass
    return found


def _inspect(fn: Callable[..., Any]) -> Signature:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return Signature((), (), frozenset(), True, True, {}, False)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable forward references: skip coercion only
        hints = {}
    positional, required, keyword = [], [], set()
    var_positional = var_keyword = False
    for param in sig.parameters.values():
        kind = param.kind
        if kind is param.VAR_POSITIONAL:
            var_positional = True
        elif kind is param.VAR_KEYWORD:
            var_keyword = True
        else:
            if kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
                positional.append(param.name)
            if kind is not param.POSITIONAL_ONLY:
                keyword.add(param.name)
            if param.default is param.empty:
                required.append(param.name)
    # a callable object's signature is its bound __call__'s (callable() cannot give it)
    call = fn if inspect.isfunction(fn) or inspect.ismethod(fn) else getattr(fn, "__call__", fn)  # noqa: B004
    is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)
    annotations = {k: v for k, v in hints.items() if k in keyword}
    return Signature(
        tuple(positional),
        tuple(required),
        frozenset(keyword),
        var_positional,
        var_keyword,
        annotations,
        is_async,
    )


_adapters: dict[Any, Any] = {}


def coerce(value: Any, annotation: Any) -> Any:
    """``value`` converted to ``annotation`` the way pydantic's lax mode does.

    Values that already have the annotated type, and annotations pydantic cannot
    handle, pass through unchanged.

    :raises ValueError: the value cannot be converted
    """
    if annotation is Any or annotation is inspect.Parameter.empty:
        return value
    if (
        isinstance(annotation, type)
        and isinstance(value, annotation)
        and not isinstance(value, bool)
    ):
        return value
    adapter: Any = _adapters.get(annotation)
    if adapter is None:
        # lazy: keeps `flowstage --help` fast (it imports this module)
        from pydantic import TypeAdapter

        try:
            adapter = TypeAdapter(annotation)
        except Exception:  # noqa: BLE001 - pydantic cannot handle the annotation: no coercion
            adapter = False
        _adapters[annotation] = adapter
    if adapter is False:  # pydantic cannot handle the annotation
        return value

    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        detail = exc.errors()[0].get("msg", str(exc))
        shown = getattr(annotation, "__name__", str(annotation))
        raise ValueError(f"expected {shown}, got {value!r} ({detail})") from None
