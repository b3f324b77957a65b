"""``flowdapt.compute.resources.workflows.context``: the spelling Flowdapt's Stages docs use."""

from flowstage.compat.flowdapt.compute.resources.workflow.context import (
    WorkflowRunContext,
    get_run_context,
)

__all__ = ["WorkflowRunContext", "get_run_context"]
