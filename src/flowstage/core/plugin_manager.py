"""The plugin manager: pluggy hooks plus the registries plugins fill.

Nothing is discovered at import time: :func:`get_plugin_manager` builds a manager, and
:func:`default_plugins` builds one per process on first use and keeps it.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Iterable
from typing import Any

import pluggy

from flowstage.core import hookspecs
from flowstage.core.errors import PluginError
from flowstage.core.registry import Registries

log = logging.getLogger("flowstage.plugins")
hookimpl = pluggy.HookimplMarker(hookspecs.PROJECT)


class FlowstagePlugins:
    """Loaded plugins, their hooks, and what they registered."""

    def __init__(self, disabled: Iterable[str] = (), *, discover: bool = True) -> None:
        # lazy: keeps `import flowstage` fast
        from flowstage.core.discovery import PluginInfo

        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.infos: list[PluginInfo] = []
        self.registries = Registries()
        self._commands_added = False
        if discover:
            # lazy: keeps `import flowstage` fast
            from flowstage.core.discovery import discover as find
            from flowstage.core.discovery import flowdapt_plugins

            for info in find(disabled):
                self._register(info)
            self.infos.extend(flowdapt_plugins())
        self._fill_registries()

    # loading -------------------------------------------------------------------------

    def _register(self, info: Any) -> None:
        self.infos.append(info)
        if info.status != "loaded":
            if info.status == "failed":
                log.warning("skipping %s: it failed to load: %s", info.label, info.error)
            return
        known = set(self.pm.hook.__dict__)
        # Any marked function that is not a hook (typos in the prefix too): pluggy would
        # register it quietly as a hook nobody calls.
        unknown = [
            n
            for n in dir(info.plugin)
            if n not in known and _is_marked(getattr(info.plugin, n, None))
        ]
        try:
            if unknown:
                # lazy: keeps `import flowstage` fast
                from flowstage.core.hints import did_you_mean

                name = unknown[0]
                raise PluginError(f"unknown hook {name!r}{did_you_mean(name, sorted(known))}")
            name = (
                info.name
                if self.pm.get_plugin(info.name) is None
                else f"{info.name}@{info.distribution}"
            )
            self.pm.register(info.plugin, name=name)
        # a plugin that fails to load is reported, not fatal
        except Exception as exc:  # noqa: BLE001
            info.status = "failed"
            info.error = f"{type(exc).__name__}: {exc}"
            info.traceback = traceback.format_exc()
            log.warning("skipping %s: %s", info.label, info.error)
            return
        info.hooks = sorted(
            n for n in dir(info.plugin) if n in known and _is_marked(getattr(info.plugin, n, None))
        )

    def register(self, plugin: Any, name: str | None = None) -> None:
        """Register a plugin object in this process only (tests, notebooks)."""
        # lazy: keeps `import flowstage` fast
        from flowstage.core.discovery import PluginInfo

        info = PluginInfo(
            name or str(getattr(plugin, "__name__", None) or repr(plugin)),
            "(registered in code)",
            ("(registered in code)", ""),
        )
        info.plugin = plugin
        self._register(info)
        self.registries = Registries()
        self._fill_registries()

    def unregister(self, plugin: Any) -> None:
        """Remove a plugin object :meth:`register` added (nothing if it is not one)."""
        if not self.pm.is_registered(plugin):
            return
        self.pm.unregister(plugin)
        self.infos = [i for i in self.infos if getattr(i, "plugin", None) is not plugin]
        self.registries = Registries()
        self._fill_registries()

    def _owner(self, plugin: Any) -> Any:
        """The plugin's info; formats as ``distribution (entry point 'name')`` when shown."""
        for info in self.infos:
            if info.plugin is plugin:
                return info
        return repr(plugin)

    def _fill_registries(self) -> None:
        for hook_name, registry in (
            ("flowstage_register_executors", self.registries.executors),
            ("flowstage_register_stage_types", self.registries.stage_types),
        ):
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                registry.owner = self._owner(impl.plugin)
                self._call_registering(impl, hook_name, registry=registry)
        for impl in self.pm.hook.flowstage_workflow_paths.get_hookimpls():
            for path in self._call_registering(impl, "flowstage_workflow_paths") or []:
                self.registries.workflow_paths.append((str(path), self._owner(impl.plugin)))
        # A name the user selects from a plugin that did not load stops with the reason.
        for info in self.infos:
            if info.status in ("failed", "disabled"):
                for registry in (self.registries.executors, self.registries.stage_types):
                    registry.unavailable.setdefault(info.name, _Unavailable(info))

    def _call_registering(self, impl: Any, hook_name: str, **kwargs: Any) -> Any:
        """A registration hook; a failure marks the plugin failed and the rest goes on."""
        try:
            return self._call_impl(impl, hook_name, **kwargs)
        except PluginError as exc:
            for info in self.infos:
                if info.plugin is impl.plugin:
                    info.status, info.error = "failed", str(exc)
            log.warning("%s", exc)
            return None

    def _call_impl(self, impl: Any, hook_name: str, **kwargs: Any) -> Any:
        args = {k: v for k, v in kwargs.items() if k in impl.argnames}
        try:
            return impl.function(**args)
        except PluginError:
            raise
        except Exception as exc:
            msg = (
                f"{self._owner(impl.plugin)} raised in hook {hook_name}: "
                f"{type(exc).__name__}: {exc}"
            )
            raise PluginError(msg) from exc

    # hooks ---------------------------------------------------------------------------

    def register_commands(self, app: Any) -> None:
        """Call ``flowstage_register_commands`` on every plugin, once; a plugin that
        raises is reported and the other commands keep working. A command name added
        twice is reported naming both plugins, and the first one (a built-in) is kept."""
        owners: dict[str, Any] = {}
        for impl in self.pm.hook.flowstage_register_commands.get_hookimpls():
            starts = len(app.registered_commands), len(app.registered_groups)
            self._call_registering(impl, "flowstage_register_commands", app=app)
            owner = self._owner(impl.plugin)
            for registered, start in zip(
                (app.registered_commands, app.registered_groups), starts, strict=True
            ):
                for added in list(registered[start:]):
                    name = _command_name(added)
                    if name is None:
                        continue
                    if name not in owners:
                        owners[name] = owner
                        continue
                    registered.remove(added)
                    msg = (
                        f"command {name!r} is registered twice: by {owners[name]} and by {owner}; "
                        "the second is ignored: uninstall or disable one of them"
                    )
                    if not isinstance(owner, str):
                        owner.status, owner.error = "failed", msg
                    log.warning("%s", msg)

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call a lifecycle hook on every plugin, in pluggy's order (``tryfirst`` first,
        ``trylast`` last); an exception is logged, never raised."""
        for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
            args = {k: v for k, v in kwargs.items() if k in impl.argnames}
            try:
                impl.function(**args)
            except Exception as exc:
                # The traceback only with --debug, like every plugin failure.
                log.error(
                    "%s raised in hook %s (the run goes on): %s: %s",
                    self._owner(impl.plugin),
                    hook_name,
                    type(exc).__name__,
                    exc,
                    exc_info=log.isEnabledFor(logging.DEBUG),
                )

    def has_impls(self, hook_name: str) -> bool:
        return bool(getattr(self.pm.hook, hook_name).get_hookimpls())


class _Unavailable:
    """Why a plugin's names are missing; formatted only when someone asks for one."""

    def __init__(self, info: Any) -> None:
        self.info = info

    def __str__(self) -> str:
        info = self.info
        if info.status == "disabled":
            return (
                f"plugin {info.name!r} (distribution {info.distribution}) is disabled "
                "(settings 'plugins: {disabled: [...]}' or FLOWSTAGE__PLUGINS__DISABLED)"
            )
        return (
            f"plugin {info.name!r} (distribution {info.distribution}) failed to load: {info.error}"
        )


def _command_name(info: Any) -> str | None:
    """The name a typer command or group is invoked by (typer's own derivation)."""
    name = getattr(info, "name", None)
    if not isinstance(name, str):  # typer's Default(None) placeholder: the sub-app's own name
        name = getattr(getattr(getattr(info, "typer_instance", None), "info", None), "name", None)
    if not isinstance(name, str):
        callback = getattr(info, "callback", None)
        name = getattr(callback, "__name__", None)
        name = name.lower().replace("_", "-") if isinstance(name, str) else None
    return name


def _is_marked(obj: Any) -> bool:
    return hasattr(obj, f"{hookspecs.PROJECT}_impl")


def get_plugin_manager(disabled: Iterable[str] | None = None) -> FlowstagePlugins:
    """A new plugin manager with every installed plugin loaded (except disabled ones)."""
    if disabled is None:
        # lazy: keeps `import flowstage` fast
        from flowstage.core.appdir import disabled_plugins

        disabled = disabled_plugins()
    return FlowstagePlugins(disabled)


_default: FlowstagePlugins | None = None
_default_lock = threading.Lock()


def default_plugins() -> FlowstagePlugins:
    """The process's plugin manager, built on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = get_plugin_manager()
        return _default


def set_default_plugins(plugins: FlowstagePlugins | None) -> None:
    """Replace (or with ``None`` forget) the process's plugin manager."""
    global _default
    with _default_lock:
        _default = plugins


def default_registries() -> Registries:
    return default_plugins().registries
