"""Workflows by name: applied ones first, then those plugins ship."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowstage.core.errors import UnknownNameError, WorkflowError
from flowstage.core.models import Workflow

if TYPE_CHECKING:
    from flowstage.core.plugin_manager import FlowstagePlugins


def shipped_workflows(plugins: FlowstagePlugins) -> list[tuple[Workflow, str]]:
    """``(workflow, plugin)`` for every workflow file plugins ship (shape-checked only)."""
    from flowstage.core.loading import load_resources

    found = []
    for path, owner in plugins.registries.workflow_paths:
        try:
            resources = load_resources(path)
        except WorkflowError:
            continue
        found.extend((r, owner) for r in resources if isinstance(r, Workflow))
    return found


def find_workflow(name: str, plugins: FlowstagePlugins) -> Any:
    """The workflow called ``name``.

    :raises UnknownNameError: nothing has that name (lists what there is)
    """
    shipped = shipped_workflows(plugins)
    for workflow, _owner in shipped:
        if workflow.name == name:
            return workflow
    known = sorted({w.name for w, _ in shipped})
    listed = ", ".join(known) if known else "none"
    msg = f"no workflow file or workflow named {name!r} (known workflows: {listed})"
    raise UnknownNameError(msg)
