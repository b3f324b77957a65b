"""The one place a run is prepared, for the Python API, the CLI, background runs and
the service alike: the workflow found and validated, the input checked, the config
merged and the executor chosen, before anything runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowstage.core.appdir import deep_merge
from flowstage.core.configs import merge_configs
from flowstage.core.dag import StageGraph
from flowstage.core.errors import ExecutorError
from flowstage.core.executor import Executor
from flowstage.core.loading import (
    check_input,
    load_resources,
    names_a_workflow,
    parse_workflow,
    validate_workflow,
)
from flowstage.core.models import ConfigResource, Workflow
from flowstage.core.plugin_manager import FlowstagePlugins, default_plugins
from flowstage.core.settings import app_dir, load_settings
from flowstage.state.resources import find_workflow
from flowstage.state.store import get_store

if TYPE_CHECKING:
    from flowstage.runner.retry import RetryPlan


@dataclass
class PreparedRun:
    """A validated workflow and input, ready to run."""

    workflow: Workflow
    #: the run input as given
    input: dict[str, Any]
    #: the root stages' keyword arguments, coerced to their annotations
    bound: dict[str, dict[str, Any]]
    plugins: FlowstagePlugins
    #: the app directory, searched for ``user_modules``
    home: str
    #: the workflow as it was given (a name, a path, text, a mapping, a Workflow)
    given: Any = None
    #: the workflow's stage graph (built once, for the run)
    graph: StageGraph | None = None


def prepare_run(
    workflow: Any,
    input: Mapping[str, Any] | None = None,
    *,
    plugins: FlowstagePlugins | None = None,
    with_input: bool = True,
    retry: RetryPlan | None = None,
) -> PreparedRun:
    """Find, load and validate ``workflow`` and check ``input`` against it.

    ``with_input=False`` checks the workflow alone (``flowstage validate`` without input).
    ``retry``: the run is a retry; once the stage graph is checked, the plan chooses
    what to reuse (:meth:`RetryPlan.choose`), and the stages it reuses, which will not
    be called, are not checked (neither their targets nor their input).

    :param workflow: a file path, YAML text, a mapping, a :class:`Workflow`, or the name
        of an applied workflow or of one a plugin ships
    :raises WorkflowError: the workflow or the input is invalid
    :raises UnknownNameError: no workflow has that name
    :raises UserError: a stage the retry would reuse lost its output
    """
    plugins = plugins or default_plugins()
    stage_types = plugins.registries.stage_types
    home = str(app_dir())
    given = workflow
    if names_a_workflow(workflow):
        workflow = find_workflow(workflow, plugins)
    definition = parse_workflow(workflow)
    graph = validate_workflow(
        definition,
        stage_types=stage_types,
        search_paths=(home,),
        reused=retry.choose if retry is not None else None,
    )
    run_input = dict(input or {})
    bound = (
        check_input(
            definition,
            run_input,
            stage_types=stage_types,
            search_paths=(home,),
            skip=retry.reuse if retry is not None else (),
        )
        if with_input
        else {}
    )
    return PreparedRun(definition, run_input, bound, plugins, home, given, graph)


def run_config(workflow: Workflow, override: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Config data for a run: the applied configs matching ``workflow``, then the configs
    written beside it in its own file, then ``override`` (each deep-merged over the last)."""
    data = merge_configs(get_store().configs(), workflow)
    if workflow.source:
        beside = [r for r in load_resources(workflow.source) if isinstance(r, ConfigResource)]
        data = deep_merge(data, merge_configs(beside, workflow))
    return deep_merge(data, override) if override else data


def executor_spec(spec: object) -> dict[str, Any]:
    """``{name: ..., **options}`` from a name, a mapping, or ``None`` (the settings)."""
    if spec is None:
        return load_settings().executor.spec()
    if isinstance(spec, str):
        return {"name": spec}
    if isinstance(spec, Mapping):
        if "name" not in spec:
            keys = ", ".join(spec) or "none"
            raise ExecutorError(f"an executor mapping needs a 'name' key, got keys: {keys}")
        return dict(spec)
    msg = f"expected an executor name, mapping or Executor, got {type(spec).__name__}"
    raise ExecutorError(msg)


def create_executor(
    spec: str | Mapping[str, Any] | Executor | None = None,
    *,
    plugins: FlowstagePlugins | None = None,
) -> Executor:
    """An executor from a name (``"dask"``) or ``{"name": ..., **options}``.

    The executor is a context manager: started on enter, closed on exit; in between it
    can serve any number of ``run_workflow`` calls.

    :raises UnknownNameError: no installed executor has that name (lists the installed)
    :raises ExecutorError: the options are not valid for that executor
    """
    if isinstance(spec, Executor):
        return spec
    options = executor_spec(spec)
    name = str(options.pop("name"))
    registry = (plugins or default_plugins()).registries.executors
    cls: type[Executor] = registry.get(name)
    return cls(**options)
