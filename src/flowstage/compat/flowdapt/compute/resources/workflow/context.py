"""``flowdapt.compute.resources.workflow.context``: ``get_run_context()`` in a stage."""

from flowstage.core.context import RunContext as WorkflowRunContext
from flowstage.core.context import get_run_context

__all__ = ["WorkflowRunContext", "get_run_context"]
