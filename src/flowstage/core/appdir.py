"""The app directory and raw settings: what every command needs before anything else.

Kept free of pydantic so that ``flowstage --help`` does not pay for it; the validated
settings model is in :mod:`flowstage.core.settings`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flowstage.core.errors import UserError

ENV_PREFIX = "FLOWSTAGE__"


def app_dir() -> Path:
    """The app directory: ``$FLOWSTAGE_HOME``, else ``~/.flowstage``.

    :raises UserError: something other than a folder is in its place
    """
    home = os.environ.get("FLOWSTAGE_HOME")
    path = Path(home).expanduser() if home else Path.home() / ".flowstage"
    if os.path.lexists(path) and not path.is_dir():
        named = f"FLOWSTAGE_HOME={home}" if home else str(path)
        msg = (
            f"{named}: expected the app directory (a folder, created if missing), "
            "found a file; point FLOWSTAGE_HOME at a folder or move the file away"
        )
        raise UserError(msg)
    return path


def split_names(value: Any) -> list[str]:
    """``"a, b"`` or ``["a", "b"]`` as a list of names."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [] if value is None else list(value)


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    from flowstage.core.yamlfiles import load_yaml

    out: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in key[len(ENV_PREFIX) :].split("__") if p]
        if not path:
            continue
        try:
            value = load_yaml(raw, key) if raw.strip() else raw
        except UserError:  # not YAML: the text itself
            value = raw
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[path[-1]] = value
    return out


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``override``, merging nested mappings (override wins)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def settings_path() -> Path:
    return app_dir() / "settings.yaml"


def disabled_plugins() -> list[str]:
    """``plugins.disabled`` alone, without validating the other settings: the CLI asks for
    it at every start, before anything else is needed."""
    path = settings_path()
    names: Any = None
    if path.exists():
        names = (read_settings_file(path).get("plugins") or {}).get("disabled")
    env = os.environ.get(f"{ENV_PREFIX}PLUGINS__DISABLED")
    if env is not None:
        names = env
    return split_names(names)


def read_settings_file(path: Path) -> dict[str, Any]:
    from flowstage.core.yamlfiles import load_yaml, read_text_file

    loaded = load_yaml(read_text_file(path, "a settings file"), str(path))
    if loaded is not None and not isinstance(loaded, dict):
        raise UserError(f"{path}: expected a mapping of settings, got {type(loaded).__name__}")
    return loaded or {}
