"""Registries that plugins fill: executors and stage types, by name."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from flowstage.core.errors import PluginError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named things contributed by plugins; a name can be registered once.

    ``owner`` is set by the plugin manager while a plugin's hook runs, so a conflict
    names both distributions.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._owners: dict[str, Any] = {}
        self.conflicts: dict[str, str] = {}
        #: plugins that did not load (failed or disabled), by entry-point name: a name
        #: nobody registered is explained by them (``str()`` of each gives the reason)
        self.unavailable: dict[str, Any] = {}
        #: who is registering now (formatted only when a conflict is reported)
        self.owner: Any = "flowstage"

    def add(self, item: T | str, name: str | None = None) -> T | str:
        """Register ``item`` under ``name`` (default: its ``name`` attribute).

        ``item`` may be an import string ``"package.module:Class"`` (then ``name`` is
        required): it is imported only when someone asks for that name, which keeps
        start-up fast for every command that does not use it.
        """
        if isinstance(item, str) and not name:
            raise PluginError(f"{self.owner}: a {self.kind} given as {item!r} needs a name")
        key = name or getattr(item, "name", None)
        if not key:
            raise PluginError(f"{self.owner}: a {self.kind} needs a name to be registered")
        if key in self._items:
            msg = (
                f"{self.kind} {key!r} is registered twice: by {self._owners[key]} "
                f"and by {self.owner}; uninstall or disable one of them"
            )
            self.conflicts[key] = msg
            raise PluginError(msg)
        # an import string stays one until the item is first asked for
        self._items[key] = item if isinstance(item, str) else self._prepare(item)  # type: ignore[assignment]
        self._owners[key] = self.owner
        return item

    def _prepare(self, item: Any) -> T:
        """What is stored for a registered object (subclasses may instantiate it)."""
        return item  # type: ignore[no-any-return]

    def _resolve(self, name: str) -> T:
        item = self._items[name]
        if not isinstance(item, str):
            return item

        module_name, _, attr = item.partition(":")
        try:
            loaded = getattr(importlib.import_module(module_name), attr)
        except Exception as exc:
            msg = (
                f"{self.kind} {name!r} (registered by {self._owners[name]} as {item!r}) "
                f"failed to import: {type(exc).__name__}: {exc}"
            )
            raise PluginError(msg) from exc
        resolved = self._prepare(loaded)
        self._items[name] = resolved
        return resolved

    def names(self) -> list[str]:
        return sorted(self._items)

    def owner_of(self, name: str) -> str:
        return str(self._owners[name])

    def get_or_none(self, name: str) -> T | None:
        return self._resolve(name) if name in self._items else None

    def get(self, name: str) -> T:
        """The item called ``name``.

        :raises UnknownNameError: listing the installed names (and plugins that did not load)
        :raises PluginError: the plugin of that name failed to load or is disabled, or
            two plugins registered the name
        """
        if name in self.conflicts:
            raise PluginError(self.conflicts[name])
        if name in self._items:
            return self._resolve(name)
        if name in self.unavailable:
            msg = f"{self.kind} {name!r} is not available: {self.unavailable[name]}"
            raise PluginError(msg) from None
        raise UnknownNameError(self.unknown(name))

    def unknown(self, name: str, hint: str = "") -> str:
        """``unknown <kind> 'name'<hint> (installed: ...)``, naming the plugins that did
        not load (one of them may have provided ``name``)."""
        installed = ", ".join(sorted(self.names())) or "none"
        msg = f"unknown {self.kind} {name!r}{hint} (installed: {installed})"
        if self.unavailable:
            reasons = "; ".join(str(r) for r in self.unavailable.values())
            msg += f"; plugins that did not load: {reasons}"
        return msg

    def items(self) -> list[tuple[str, T]]:
        """Every registered item (importing lazy ones; those that fail are left out)."""
        found = []
        for name in self.names():
            try:
                found.append((name, self._resolve(name)))
            except PluginError as exc:
                logging.getLogger("flowstage.plugins").warning("%s", exc)
        return found


class StageTypeRegistry(Registry[Any]):
    """Stage types by name; a registered class is instantiated once."""

    def __init__(self) -> None:
        super().__init__("stage type")

    def _prepare(self, item: Any) -> Any:
        return item() if isinstance(item, type) else item


@dataclass
class Registries:
    """Everything plugins registered."""

    executors: Registry[Any] = field(default_factory=lambda: Registry("executor"))
    stage_types: Registry[Any] = field(default_factory=StageTypeRegistry)
    workflow_paths: list[tuple[str, Any]] = field(default_factory=list)  # (path, owning plugin)
    commands: list[Callable[..., Any]] = field(default_factory=list)
