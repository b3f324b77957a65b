"""Where a put or get goes: the run's namespace, its cluster memory and artifact
location, as the run context (or, outside a run, the settings) says."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from flowstage.core.context import _current
from flowstage.core.errors import ObjectStoreError
from flowstage.storage.keys import STRATEGIES, validate_namespace
from flowstage.storage.location import Location
from flowstage.storage.memory import _outside, memory_backend

if TYPE_CHECKING:
    from flowstage.core.context import RunContext
    from flowstage.core.executor import Executor


def run_settings() -> dict[str, Any]:
    """What workers need from the driver's settings: where artifacts live and the size
    limit of ``fallback``. Resolved in the driver, so every worker of a run uses the same
    artifact location whatever its own environment (``context.extras["object_store"]``)."""
    from flowstage.core.settings import app_dir, load_settings

    settings = load_settings()
    url = settings.artifacts.url or (app_dir() / "artifacts").resolve().as_uri()
    return {
        "artifacts": {"url": url, "options": dict(settings.artifacts.options)},
        "memory_size_limit": settings.object_store.memory_size_limit,
    }


_settings_cache: dict[Any, dict[str, Any]] = {}


def _local_settings() -> dict[str, Any]:
    """:func:`run_settings` of this process, re-read when the settings change."""
    from flowstage.core.settings import settings_path

    path = settings_path()
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        mtime = None
    key = (
        str(path),
        mtime,
        tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("FLOWSTAGE__"))),
    )
    found = _settings_cache.get(key)
    if found is None:
        found = run_settings()
        _settings_cache.clear()
        _settings_cache[key] = found
    return found


class _Scope:
    """Where a call happens: its namespace, its stage (for messages) and its tiers."""

    def __init__(self, namespace: str | None, executor: Executor | None) -> None:
        context: RunContext | None = _current.get(None)
        self.context = context
        self.namespace = validate_namespace(
            namespace if namespace is not None else context.namespace if context else "default"
        )
        if context is None:
            self.where = "code outside a run"
        else:
            item = f" (item {context.item_index})" if context.item_index is not None else ""
            self.where = f"stage {context.stage!r}{item} of run {context.run.id}"
        self.settings = (
            context.extras.get("object_store") if context else None
        ) or _local_settings()
        self._executor = executor

    def memory(self) -> Any:
        """The cluster memory backend, or None when the executor has none."""
        if self._executor is not None:
            if not self._executor.started:
                msg = (
                    f"executor {self._executor.describe()!r} is not started: use it inside "
                    f"`with create_executor(...) as executor:`"
                )
                raise ObjectStoreError(msg)
            descriptor = self._executor.cluster_memory()
        elif self.context is None:
            return _outside
        else:
            descriptor = self.context.extras.get("cluster_memory")
        return None if descriptor is None else memory_backend(descriptor)

    def artifacts(self) -> Any:
        spec = self.settings["artifacts"]
        return Location.get(spec["url"], spec.get("options") or {})

    @property
    def size_limit(self) -> int:
        return int(self.settings["memory_size_limit"])


def _strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        msg = (
            f"unknown object store strategy {strategy!r} (expected one of: {', '.join(STRATEGIES)})"
        )
        raise ObjectStoreError(msg)
    return strategy
