"""The ``flowdapt`` import name, opt-in: an import hook that maps ``flowdapt`` and
``flowdapt.*`` to :mod:`flowstage.compat.flowdapt` when the real Flowdapt is absent.

``flowstage compat flowdapt install`` writes :data:`PTH_NAME` into the environment's
site-packages. Python runs its one line at every start (so process-pool, Dask and Ray
workers of that environment get the hook too); the line only puts a small stub first on
``sys.meta_path``, which imports this module the first time something imports
``flowdapt`` (flowstage itself is not imported at start-up).

The hook steps aside when the real ``flowdapt`` distribution is installed, or a
``flowdapt`` package is importable from ``sys.path``: then ``flowdapt`` is Flowdapt.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import sys
import sysconfig
from pathlib import Path
from types import ModuleType
from typing import Any

ALIAS = "flowdapt"
TARGET = "flowstage.compat.flowdapt"
PTH_NAME = "flowstage-compat-flowdapt.pth"

#: the one line of the .pth file: a stub finder that defers to :func:`find_spec`
PTH_LINE = (
    "import sys; sys.meta_path.insert(0, type('FlowstageFlowdaptStub', (), "
    "{'find_spec': staticmethod(lambda name, path=None, target=None: "
    "__import__('flowstage.compat.hook').compat.hook.find_spec(name, path, target) "
    "if name.partition('.')[0] == 'flowdapt' "
    "and __import__('importlib.util').util.find_spec('flowstage') else None)})())\n"
)


def real_flowdapt() -> str | None:
    """The version of the real Flowdapt if it is installed (or importable), else None."""
    try:
        return importlib.metadata.version(ALIAS)
    except importlib.metadata.PackageNotFoundError:
        pass
    if importlib.machinery.PathFinder.find_spec(ALIAS) is not None:
        return "unknown version (a 'flowdapt' package on sys.path)"
    return None


class _AliasLoader(importlib.abc.Loader):
    """Loads ``flowdapt.x`` as the already importable ``flowstage.compat.flowdapt.x``."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module ran when it was imported under its own name."""


def find_spec(
    name: str, path: Any = None, target: Any = None
) -> importlib.machinery.ModuleSpec | None:
    """The spec of ``flowdapt`` or ``flowdapt.*`` as an alias, or None to step aside."""
    if name != ALIAS and not name.startswith(ALIAS + "."):
        return None
    if name == ALIAS:
        if real_flowdapt() is not None:
            return None
    else:
        top = sys.modules.get(ALIAS)
        if top is None or not getattr(top, "__name__", "").startswith(TARGET):
            return None  # the real Flowdapt was imported: its submodules are its own
    module_name = TARGET + name[len(ALIAS) :]
    try:
        found = importlib.util.find_spec(module_name)
    except ModuleNotFoundError:
        found = None
    if found is None:
        return None
    is_package = found.submodule_search_locations is not None
    return importlib.util.spec_from_loader(name, _AliasLoader(module_name), is_package=is_package)


class FlowdaptFinder(importlib.abc.MetaPathFinder):
    """The hook as a finder object for ``sys.meta_path`` (see :func:`find_spec`)."""

    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        return find_spec(fullname, path, target)


def install() -> None:
    """Put the hook first on ``sys.meta_path`` of this process (once)."""
    if not any(isinstance(f, FlowdaptFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, FlowdaptFinder())


def uninstall() -> None:
    """Take the hook off ``sys.meta_path`` of this process (imported modules stay)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, FlowdaptFinder)]


def site_packages() -> Path:
    """This environment's site-packages, where the .pth file goes."""
    return Path(sysconfig.get_paths()["purelib"])


def pth_path(site_dir: Path | None = None) -> Path:
    return (site_dir or site_packages()) / PTH_NAME


def write_pth(site_dir: Path | None = None) -> Path:
    """Write the .pth file; its path.

    :raises RuntimeError: the real Flowdapt is installed (the hook would never act)
    """
    version = real_flowdapt()
    if version is not None:
        msg = (
            f"the real Flowdapt is installed here (flowdapt {version}): 'import flowdapt' "
            "already gives Flowdapt, so the compatibility layer is not installed; "
            "uninstall flowdapt first to use flowstage's"
        )
        raise RuntimeError(msg)
    path = pth_path(site_dir)
    path.write_text(PTH_LINE, encoding="utf-8")
    return path


def remove_pth(site_dir: Path | None = None) -> bool:
    """Remove the .pth file; whether it was there."""
    path = pth_path(site_dir)
    existed = path.exists()
    path.unlink(missing_ok=True)
    return existed


def status(site_dir: Path | None = None) -> dict[str, Any]:
    """Whether the .pth is installed, where, whether the real Flowdapt is, and what
    ``import flowdapt`` gives in this process."""
    path = pth_path(site_dir)
    real = real_flowdapt()
    if real is not None:
        active = f"flowdapt {real} (the real one)"
    elif path.exists() or any(isinstance(f, FlowdaptFinder) for f in sys.meta_path):
        active = TARGET
    else:
        active = "nothing (not installed)"
    return {
        "installed": path.exists(),
        "pth": str(path),
        "real_flowdapt": real,
        "import flowdapt gives": active,
    }
