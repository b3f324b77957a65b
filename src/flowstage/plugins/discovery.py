"""Finding plugins: entry points in group ``flowstage.plugins``, loaded one by one.

A plugin that fails to import is recorded (entry point, distribution, error) and
skipped; the others keep working. Disabled plugins are never imported.
"""

from __future__ import annotations

import functools
import importlib.metadata
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

ENTRY_POINT_GROUP = "flowstage.plugins"


@dataclass
class PluginInfo:
    """What ``flowstage plugins`` shows about one entry point."""

    name: str
    value: str
    _distribution: tuple[str, str] | None = None
    status: str = "loaded"  # loaded | failed | disabled
    error: str | None = None
    traceback: str | None = None
    hooks: list[str] = field(default_factory=list)
    plugin: Any = None

    @property
    def distribution(self) -> str:
        return self._dist()[0]

    @property
    def version(self) -> str:
        return self._dist()[1]

    def _dist(self) -> tuple[str, str]:
        if self._distribution is None:
            self._distribution = distribution_of(self.value)
        return self._distribution

    @property
    def label(self) -> str:
        return f"plugin {self.name!r} (distribution {self.distribution})"

    def __str__(self) -> str:
        return f"{self.distribution} (entry point {self.name!r})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "distribution": self.distribution, "version": self.version,
            "value": self.value, "status": self.status, "error": self.error, "hooks": self.hooks,
        }


@functools.lru_cache(maxsize=1)
def _packages() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


def distribution_of(value: str) -> tuple[str, str]:
    """``(distribution, version)`` that provides an entry point's module (computed lazily:
    stevedore's entry point cache does not keep it)."""
    top = value.split(":")[0].split(".")[0]
    names = _packages().get(top) or []
    if not names:
        return "unknown", "?"
    name = names[0]
    try:
        return name, importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return name, "?"


def discover(disabled: Iterable[str] = ()) -> list[PluginInfo]:
    """Load every entry point of the group except ``disabled`` ones; never raises."""
    from stevedore import ExtensionManager

    skip = set(disabled)
    infos: dict[tuple[str, str], PluginInfo] = {}

    def info_for(ep: importlib.metadata.EntryPoint) -> PluginInfo:
        key = (ep.name, ep.value)
        if key not in infos:
            infos[key] = PluginInfo(ep.name, ep.value)
        return infos[key]

    def on_failure(_manager: Any, ep: importlib.metadata.EntryPoint, err: BaseException) -> None:
        info = info_for(ep)
        info.status = "failed"
        info.error = f"{type(err).__name__}: {err}"
        info.traceback = "".join(traceback.format_exception(type(err), err, err.__traceback__))

    class _Loader(ExtensionManager):  # type: ignore[type-arg]
        # Same hook stevedore's NamedExtensionManager uses to skip entry points unloaded.
        def _load_one_plugin(self, ep: Any, *args: Any) -> Any:
            info = info_for(ep)
            if ep.name in skip:
                info.status = "disabled"
                return None
            return super()._load_one_plugin(ep, *args)

    manager = _Loader(ENTRY_POINT_GROUP, invoke_on_load=False, on_load_failure_callback=on_failure)
    for ext in manager.extensions:
        info_for(ext.entry_point).plugin = ext.plugin
    return sorted(infos.values(), key=lambda i: (not i.value.startswith("flowstage."), i.name))
