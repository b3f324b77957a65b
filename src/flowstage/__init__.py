"""flowstage: run YAML workflows of plain Python functions locally, on Dask or on Ray.

Heavy modules are imported on first use, so ``import flowstage`` stays fast.
"""

from __future__ import annotations

import importlib
from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

from flowstage.core.context import get_run_context
from flowstage.core.errors import ObjectNotFound, StageError, WorkflowError
from flowstage.core.plugin_manager import hookimpl

if TYPE_CHECKING:
    from flowstage.core.loading import load_workflow
    from flowstage.runner.api import arun_workflow, create_executor, retry_run, run_workflow
    from flowstage.storage.object_store import object_store

__all__ = [
    "ObjectNotFound",
    "StageError",
    "WorkflowError",
    "arun_workflow",
    "create_executor",
    "get_run_context",
    "hookimpl",
    "load_workflow",
    "object_store",
    "retry_run",
    "run_workflow",
]

try:
    __version__ = _metadata.version("flowstage")
except _metadata.PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0.0.0+unknown"

_LAZY = {
    "run_workflow": "flowstage.runner.api",
    "retry_run": "flowstage.runner.api",
    "arun_workflow": "flowstage.runner.api",
    "create_executor": "flowstage.runner.api",
    "load_workflow": "flowstage.core.loading",
    "object_store": "flowstage.storage.object_store",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flowstage' has no attribute {name!r}")

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
