"""Stage code for workers on other hosts.

Targets import from the workflow file's folder and from ``user_modules`` in the app
directory. Workers of a cluster on other hosts do not have those folders, so for such
executors the driver packs their Python files into one zip per run (it travels with the
run context); each worker host unpacks it once into a private folder of its temporary
folder (``flowstage-code-<uid>/<digest>``), and each worker process puts that folder first
on ``sys.path``. When a run brings other code than the last one (changed, or another
workflow's), modules of the same names imported before are forgotten, so the run's own
code is what runs. Versions no process of the host has used for ``UNUSED_DAYS`` are
removed when a new one arrives.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import logging
import os
import shutil
import stat
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowstage.core.errors import UserError
from flowstage.core.targets import import_target

logger = logging.getLogger(__name__)

#: at most this many bytes of Python files are uploaded per run
MAX_BYTES = 20 * 1024 * 1024
#: at most this many Python files are uploaded per run
MAX_FILES = 5000
#: folders never searched for code (virtual environments are found by their pyvenv.cfg)
_SKIPPED_DIRS = {"__pycache__", "node_modules", "site-packages", "build", "dist"}
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)  # fixed, so equal code gives an equal zip and digest


@dataclass(frozen=True)
class SourceBundle:
    """Python files of the driver's stage folders, zipped."""

    #: the folders on the driver's host the files come from
    origins: tuple[str, ...]
    #: top-level module and package names the bundle provides
    modules: tuple[str, ...]
    digest: str
    data: bytes


def pack_sources(workflow_dir: str | None, home: str) -> SourceBundle | None:
    """The ``.py`` files under ``workflow_dir`` (at the zip's top level) and under
    ``home/user_modules`` (as ``user_modules/...``); None when there are none.

    :raises UserError: more than :data:`MAX_FILES` files or :data:`MAX_BYTES` bytes
    """

    files: dict[str, Path] = {}
    origins = []
    user_modules = Path(home) / "user_modules"
    if user_modules.is_dir():
        origins.append(str(user_modules))
        files.update({f"user_modules/{rel}": path for rel, path in _python_files(user_modules)})
    if workflow_dir and Path(workflow_dir).is_dir():
        origins.append(str(workflow_dir))
        for rel, path in _python_files(Path(workflow_dir)):
            files.setdefault(rel, path)  # like sys.path order: user_modules comes first
    if not files:
        return None
    buffer = io.BytesIO()
    total = 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            data = files[name].read_bytes()
            total += len(data)
            if total > MAX_BYTES:
                raise UserError(
                    _too_much(origins, f"more than {MAX_BYTES // (1024 * 1024)} MB of Python files")
                )
            info = zipfile.ZipInfo(name, _ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    data = buffer.getvalue()
    modules = tuple(sorted({name.partition("/")[0].removesuffix(".py") for name in files}))
    return SourceBundle(tuple(origins), modules, hashlib.sha256(data).hexdigest()[:20], data)


def _python_files(root: Path) -> list[tuple[str, Path]]:
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".")
            and d not in _SKIPPED_DIRS
            and not (Path(folder, d) / "pyvenv.cfg").exists()
        )
        for name in names:
            if name.endswith(".py"):
                path = Path(folder, name)
                found.append((path.relative_to(root).as_posix(), path))
                if len(found) > MAX_FILES:
                    raise UserError(_too_much([str(root)], f"more than {MAX_FILES} Python files"))
    return found


def _too_much(origins: list[str], what: str) -> str:
    where = " and ".join(repr(o) for o in origins)
    return (
        f"cannot upload the stage code in {where} to the cluster: {what}; "
        "keep the workflow in a folder of its own, or set the executor option "
        "'upload_code: false' if the workers already have the code"
    )


# --- in the workers ------------------------------------------------------------------

_lock = threading.RLock()
#: the bundle whose folder is on sys.path in this process, that folder, and when this
#: process last marked the folder as used (``time.monotonic()``)
_active: tuple[SourceBundle, str, float] | None = None
#: targets resolved from each bundle: (digest, target) -> callable
_targets: dict[tuple[str, str], Callable[..., Any]] = {}

#: a host's code versions unused for this long are removed when another one arrives
UNUSED_DAYS = 7
#: a process using a version marks it as used (its folder's mtime) this often
MARK_USED_SECONDS = 3600.0


def use_sources(bundle: SourceBundle) -> None:
    """Make ``bundle``'s code what this process imports: its folder first on ``sys.path``
    (in place of an earlier bundle's), and modules of its names forgotten if they came
    from an earlier bundle or from the driver's folders (same host)."""
    global _active
    if _marked_recently(_active, bundle):
        return
    with _lock:
        active = _active
        if _marked_recently(active, bundle):
            return
        path = _unpack_in_use(bundle)  # unpacked again if it was removed meanwhile
        if active is None or active[0].digest != bundle.digest:
            if active is not None and active[1] in sys.path:
                sys.path.remove(active[1])
            sys.path.insert(0, path)
            _forget_modules(bundle, path)
        importlib.invalidate_caches()
        _active = (bundle, path, time.monotonic())


def _marked_recently(active: tuple[SourceBundle, str, float] | None, bundle: SourceBundle) -> bool:
    """Whether ``bundle`` is the active code and was marked as used within the hour."""
    return (
        active is not None
        and active[0].digest == bundle.digest
        and time.monotonic() - active[2] < MARK_USED_SECONDS
    )


def _unpack_in_use(bundle: SourceBundle) -> str:
    """``bundle``'s folder, marked as used (its mtime), so that other processes of the
    host do not remove it as unused; unpacked again if one did just before the mark."""
    for _ in range(3):
        path = _unpack(bundle)
        try:
            os.utime(path)
            return path
        except FileNotFoundError:
            continue
    raise FileNotFoundError(f"the stage code sent with the run keeps disappearing from {path}")


def resolve_in(bundle: SourceBundle, target: str) -> Callable[..., Any]:
    """``target`` imported from ``bundle``'s code (cached per bundle, so runs of other
    code on other threads of this process do not mix theirs in).

    :raises TargetError: see :func:`~flowstage.core.targets.import_target`
    """
    found = _targets.get((bundle.digest, target))
    if found is not None:
        return found

    with _lock:  # no other bundle becomes active between the switch and the import
        use_sources(bundle)
        found = import_target(target)
        _targets[(bundle.digest, target)] = found
        return found


def _unpack(bundle: SourceBundle) -> str:
    """The folder ``bundle`` is unpacked to (once per host: other workers may race us)."""

    root = _code_root(Path(tempfile.gettempdir()))
    path = root / bundle.digest
    if not path.is_dir():
        partial = root / f"{bundle.digest}.{os.getpid()}.{threading.get_ident()}.part"
        with zipfile.ZipFile(io.BytesIO(bundle.data)) as archive:
            archive.extractall(partial)
        try:
            os.rename(partial, path)
        except OSError:  # another process got there first: its copy is the same
            shutil.rmtree(partial, ignore_errors=True)
        _remove_unused(root, keep=path)
    return str(path)


def _remove_unused(root: Path, keep: Path) -> None:
    """Remove the code versions (and abandoned partial unpackings) in ``root`` that no
    process has marked as used for ``UNUSED_DAYS``."""

    cutoff = time.time() - UNUSED_DAYS * 86400
    for entry in root.iterdir():
        with contextlib.suppress(OSError):  # another worker may be removing it too
            if (
                entry != keep
                and entry.is_dir()
                and not entry.is_symlink()
                and entry.stat().st_mtime < cutoff
            ):
                # Moved aside first: a process about to use it unpacks it again whole.
                trash = root / f"{entry.name}.{os.getpid()}.{threading.get_ident()}.trash"
                os.rename(entry, trash)
                if trash.stat().st_mtime >= cutoff:  # marked as used meanwhile: put it back
                    os.rename(trash, entry)
                    continue
                shutil.rmtree(trash)


def _code_root(temp: Path) -> Path:
    """This user's folder for sent code in ``temp``: ``flowstage-code-<uid>``, created
    private; if another user holds that name or others may write to it (code could
    have been put in it), a private ``flowstage-code-<uid>-<random>`` folder instead."""
    if not hasattr(os, "getuid"):  # Windows: the temporary folder is per user already
        root = temp / "flowstage-code"
        root.mkdir(exist_ok=True)
        return root
    root = temp / f"flowstage-code-{os.getuid()}"
    with contextlib.suppress(OSError):  # taken by another user: judged below
        root.mkdir(mode=0o700, exist_ok=True)
    if _is_private(root):
        return root
    # Such a folder cannot be removed by us (nor trusted), so it must not stop us.
    for other in sorted(temp.glob(f"{root.name}-*")):
        if _is_private(other):
            return other
    fallback = Path(tempfile.mkdtemp(prefix=f"{root.name}-", dir=temp))
    logger.warning(
        "%s belongs to another user or others may write to it; using %s for sent code",
        root,
        fallback,
    )
    return fallback


def _is_private(folder: Path) -> bool:
    """Whether ``folder`` is a real folder of ours that no one else may write to."""
    try:
        info = folder.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o022


def _forget_modules(bundle: SourceBundle, folder: str) -> None:
    """Drop modules of ``bundle``'s names that were imported from an earlier bundle or
    from the driver's own folders, so the next import finds ``folder``'s copy. Modules
    from anywhere else (the standard library, installed packages) are left alone."""
    stale = tuple(os.path.join(place, "") for place in (os.path.dirname(folder), *bundle.origins))
    mine = os.path.join(folder, "")
    for name, module in list(sys.modules.items()):
        if name.partition(".")[0] not in bundle.modules:
            continue
        places = [
            str(p)
            for p in [getattr(module, "__file__", None), *(getattr(module, "__path__", None) or ())]
            if p
        ]
        if any(p.startswith(stale) and not p.startswith(mine) for p in places):
            del sys.modules[name]
