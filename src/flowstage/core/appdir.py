"""The app directory and raw settings: what every command needs before anything else.

Kept free of pydantic so that ``flowstage --help`` does not pay for it; the validated
settings model is in :mod:`flowstage.core.settings`.

The app directory holds run inputs, logs and results, which may carry secrets: flowstage
creates it and every folder in it owner-only (0700) and its files 0600, whatever the
umask (:func:`private_dir`, :func:`create_private`). An existing app directory that other
users can enter is tightened to 0700 (with a warning) the first time a process writes to
it; a folder owned by another user is left alone.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flowstage.core.errors import UserError

ENV_PREFIX = "FLOWSTAGE__"
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600

log = logging.getLogger("flowstage.appdir")
_checked: set[str] = set()
_checked_lock = threading.Lock()


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


def private_dir(path: Path) -> Path:
    """Folder ``path``, created with any missing parents as 0700 (whatever the umask).

    When ``path`` is in the app directory, the app directory is made private too.
    """
    missing: list[Path] = []
    folder = Path(os.path.abspath(path))
    while not folder.is_dir() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, PRIVATE_DIR)
        except FileExistsError:
            continue  # another process made it: it chose the mode
        os.chmod(folder, PRIVATE_DIR)  # the umask may have taken the owner's bits
    home = os.path.abspath(app_dir())
    if os.path.abspath(path) == home or os.path.abspath(path).startswith(home + os.sep):
        _tighten(home)
    return path


def _tighten(home: str) -> None:
    """Make an existing app directory that other users may read owner-only, once."""
    if home in _checked:
        return
    with _checked_lock:
        _checked.add(home)
        try:
            info = os.stat(home)
            if info.st_uid != os.getuid() or not info.st_mode & 0o077:
                return
            os.chmod(home, PRIVATE_DIR)
        except OSError:
            return  # cannot see or change it: a later write reports the real problem
        log.warning(
            "%s was readable by other users (mode %s): it holds run inputs, logs and "
            "results, so it is now 0700",
            home,
            stat.filemode(info.st_mode),
        )


def create_private(path: str | Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_EXCL) -> int:
    """A file descriptor of ``path`` opened with ``flags`` and mode 0600, whatever the
    umask (an existing file is narrowed to 0600 too)."""
    fd = os.open(path, flags, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def split_names(value: Any) -> list[str]:
    """``"a, b"`` or ``["a", "b"]`` as a list of names."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [] if value is None else list(value)


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    # lazy: keeps `flowstage --help` fast (it imports this module)
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
    # lazy: keeps `flowstage --help` fast (it imports this module)
    from flowstage.core.yamlfiles import load_yaml, read_text_file

    loaded = load_yaml(read_text_file(path, "a settings file"), str(path))
    if loaded is not None and not isinstance(loaded, dict):
        raise UserError(f"{path}: expected a mapping of settings, got {type(loaded).__name__}")
    return loaded or {}
