"""Finding plugins: entry points in group ``flowstage.plugins``, loaded one by one.

A plugin that fails to import is recorded (entry point, distribution, error) and
skipped; the others keep working. Disabled plugins are never imported.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from stevedore import ExtensionManager, _cache

ENTRY_POINT_GROUP = "flowstage.plugins"
#: Flowdapt plugins' group: listed, never imported here (their modules import ``flowdapt``)
FLOWDAPT_GROUP = "flowdapt.plugins"


@dataclass
class PluginInfo:
    """What ``flowstage plugins`` shows about one entry point."""

    name: str
    value: str
    _distribution: tuple[str, str] | None = None
    status: str = "loaded"  # loaded | failed | disabled | flowdapt
    error: str | None = None
    traceback: str | None = None
    hooks: list[str] = field(default_factory=list)
    plugin: Any = None
    _lookup: Any = field(default=None, repr=False)

    @property
    def distribution(self) -> str:
        return self._dist()[0]

    @property
    def version(self) -> str:
        return self._dist()[1]

    def _dist(self) -> tuple[str, str]:
        if self._distribution is None:
            lookup = self._lookup or DistributionLookup()
            self._distribution = lookup(self.name, self.value)
        return self._distribution

    @property
    def label(self) -> str:
        return f"plugin {self.name!r} (distribution {self.distribution})"

    def __str__(self) -> str:
        return f"{self.distribution} (entry point {self.name!r})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "value": self.value,
            "status": self.status,
            "error": self.error,
            "hooks": self.hooks,
        }


class DistributionLookup:
    """Which distribution declares each entry point of the group, found on first need.

    ``importlib.metadata.entry_points()`` knows (``ep.dist``) but stevedore's cached
    entry points do not; one scan of the group's entry points answers for every plugin,
    and costs nothing when no plugin is ever shown or reported.
    """

    def __init__(self) -> None:
        self._found: dict[tuple[str, str], tuple[str, str]] | None = None

    def __call__(self, name: str, value: str) -> tuple[str, str]:
        if self._found is None:
            found: dict[tuple[str, str], tuple[str, str]] = {}
            for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
                dist = ep.dist
                if dist is not None and (ep.name, ep.value) not in found:
                    found[(ep.name, ep.value)] = (dist.name, dist.version)
            self._found = found
        return self._found.get((name, value), ("unknown", "?"))


def _entry_points(group: str) -> list[importlib.metadata.EntryPoint]:
    """The group's entry points as installed now.

    stevedore memoizes them for the life of the process (``ExtensionManager.ENTRY_POINT_CACHE``
    and its module-level cache), so a plugin installed after the first discovery would stay
    invisible to ``get_plugin_manager()``; a new cache object re-validates its on-disk copy
    against the mtimes of ``sys.path``, which is cheap.
    """
    try:
        return list(_cache.Cache().get_group_all(group))
    except (ImportError, AttributeError):  # a stevedore without this private module
        return list(importlib.metadata.entry_points(group=group))


def discover(disabled: Iterable[str] = ()) -> list[PluginInfo]:
    """Load every entry point of the group except ``disabled`` ones; never raises."""

    skip = set(disabled)
    infos: dict[tuple[str, str], PluginInfo] = {}
    lookup = DistributionLookup()

    def info_for(ep: importlib.metadata.EntryPoint) -> PluginInfo:
        key = (ep.name, ep.value)
        if key not in infos:
            infos[key] = PluginInfo(ep.name, ep.value, _lookup=lookup)
        return infos[key]

    def on_failure(_manager: Any, ep: importlib.metadata.EntryPoint, err: BaseException) -> None:
        info = info_for(ep)
        info.status = "failed"
        info.error = f"{type(err).__name__}: {err}"
        info.traceback = "".join(traceback.format_exception(type(err), err, err.__traceback__))

    class _Loader(ExtensionManager):  # type: ignore[type-arg]
        def list_entry_points(self) -> list[importlib.metadata.EntryPoint]:
            return _entry_points(self.namespace)

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


def flowdapt_plugins() -> list[PluginInfo]:
    """The Flowdapt plugins installed (group ``flowdapt.plugins``), not imported: their
    folder, to apply with ``flowstage apply -p``, is in ``error``'s place as a hint."""

    infos = []
    for ep in importlib.metadata.entry_points(group=FLOWDAPT_GROUP):
        dist = ep.dist
        found = (dist.name, dist.version) if dist is not None else ("unknown", "?")
        info = PluginInfo(ep.name, ep.value, found, status="flowdapt")
        try:
            spec = importlib.util.find_spec(ep.module.partition(".")[0])
        except (ImportError, ValueError):
            spec = None
        folders = list(spec.submodule_search_locations or []) if spec is not None else []
        info.error = f"a Flowdapt plugin: flowstage apply -p {folders[0]}" if folders else None
        infos.append(info)
    return sorted(infos, key=lambda i: i.name)
