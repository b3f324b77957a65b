"""The Python API: ``run_workflow``, ``arun_workflow``, ``create_executor``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

from flowstage.core.caching import RunCache, cache_mode
from flowstage.core.context import ConfigView, RunContext, RunInfo
from flowstage.core.errors import PluginError, RunCancelled, StageError, UserError, WorkflowError
from flowstage.core.executor import Executor
from flowstage.core.loading import names_a_workflow, search_paths_for
from flowstage.core.models import Workflow
from flowstage.core.plugin_manager import FlowstagePlugins
from flowstage.core.runs import Run, StageRecord, new_run_id, now, reused_note
from flowstage.core.scheduler import RunDriver
from flowstage.core.sources import pack_sources
from flowstage.core.threads import SharedThreads
from flowstage.runner.prepare import create_executor, prepare_run, run_config
from flowstage.runner.retry import plan_retry
from flowstage.state.store import get_store
from flowstage.storage.scope import run_settings as object_store_settings
from flowstage.storage.stage_cache import ArtifactCacheStore

__all__ = ["arun_workflow", "create_executor", "retry_run", "run_workflow"]

T = TypeVar("T")


#: threads for engine calls that block (starting, asking the cluster)
_engine_threads = SharedThreads(32, "flowstage-engine")


async def arun_workflow(
    workflow: Any,
    input: Mapping[str, Any] | None = None,
    *,
    executor: str | Mapping[str, Any] | Executor | None = None,
    config: Mapping[str, Any] | None = None,
    namespace: str = "default",
    return_run: bool = False,
    record: bool = True,
    source: str = "api",
    run_id: str | None = None,
    on_run: Any = None,
    retry_of: str | None = None,
    cache: bool | str = True,
) -> Any:
    """Run a workflow and return its result (see :func:`run_workflow`)."""
    mode = cache_mode(cache)
    plan = None
    if retry_of is not None:
        plan = plan_retry(retry_of)
        workflow = plan.workflow if workflow is None else workflow
        if workflow is None:
            msg = f"run {plan.run_id}: its workflow was given inline: pass it to retry the run"
            raise UserError(msg)
        input = plan.input if input is None else input
        config = plan.kept.config if config is None else config
        executor = plan.executor if executor is None else executor
        namespace = plan.namespace if namespace == "default" else namespace
    prepared = prepare_run(workflow, input)
    plugins, workflow, run_input, home = (
        prepared.plugins,
        prepared.workflow,
        prepared.input,
        prepared.home,
    )
    if plan is not None:
        plan.choose(workflow)
    config_data = run_config(workflow, config)
    owned = not isinstance(executor, Executor)
    engine = create_executor(executor, plugins=plugins)
    try:
        # Engines know their capacities once started; starting may take seconds (Ray).
        if not engine.started:
            await _engine_threads.run(engine.start)
        problems = await _engine_threads.run(engine.check_resources, workflow)
        if problems:
            raise WorkflowError([f"{workflow.label}: {p}" for p in problems], source=workflow.label)
    except BaseException:
        if owned:
            engine.close()
        raise
    stages = workflow.spec.stages
    run = Run(
        id=run_id or new_run_id(),
        workflow=workflow.name,
        source=source,
        executor=engine.name,
        namespace=namespace,
        input=run_input,
        stages={s.name: StageRecord(s.name, depends_on=list(s.depends_on)) for s in stages},
        record=record,
        retry_of=plan.run_id if plan is not None else None,
        workflow_ref=_workflow_ref(workflow, prepared.given),
        config=dict(config) if config else None,
    )
    context = RunContext(
        run_input,
        ConfigView(config_data, run_input),
        namespace,
        engine.name,
        workflow,
        RunInfo(run.id, workflow.name, source, now()),
    )
    if plan is not None:
        for name in plan.reuse:
            run.stages[name].note = reused_note(plan.run_id)
        for name, items in plan.reuse_items.items():
            run.stages[name].note = f"{len(items)} item(s) reused from run {plan.run_id}"
    if on_run is not None:
        on_run(run)
    run_cache: RunCache | None = None
    try:
        context.extras["cluster_memory"] = engine.cluster_memory()
        context.extras["object_store"] = object_store_settings()  # the driver's artifact location
        if mode != "off" and any(s.cache is not None for s in stages):
            run_cache = RunCache(
                ArtifactCacheStore.from_settings(context.extras["object_store"]["artifacts"]),
                mode,
                config_data,
                search_paths_for(workflow, (home,)),
                workflow.name,
            )
        if engine.uploads_code:
            sources = pack_sources(
                str(Path(workflow.source).parent) if workflow.source else None, home
            )
            if sources is not None:
                await _engine_threads.run(engine.install_code, sources)
            context.extras["sources"] = sources
        run.state = "running"
        run.started_at = now()
        plugins.notify("flowstage_run_started", run=run)
        driver = RunDriver(
            workflow,
            run,
            context,
            engine,
            plugins,
            plugins.registries.stage_types,
            prepared.bound,
            search_paths_for(workflow, (home,)),
            reuse=plan.reuse if plan is not None else None,
            reuse_items=plan.reuse_items if plan is not None else None,
            reused_from=plan.run_id if plan is not None else None,
            keep_outputs=record and get_store().settings.keep_outputs,
            cache=run_cache,
        )
        run.result = await driver.execute()
        run.state = "finished"
    except StageError as exc:
        run.state, run.error, run.exception = "failed", str(exc), exc
    except (asyncio.CancelledError, KeyboardInterrupt) as exc:
        run.state, run.error, run.exception = (
            "cancelled",
            "the run was cancelled",
            RunCancelled("the run was cancelled"),
        )
        _finish(run, plugins, engine if owned else None)
        raise exc
    except (UserError, PluginError) as exc:
        run.state, run.error, run.exception = "failed", str(exc), exc
    except Exception as exc:  # a bug: record the run as failed, stop what we started, show it
        run.state, run.error, run.exception = "failed", f"{type(exc).__name__}: {exc}", exc
        _finish(run, plugins, engine if owned else None)
        raise
    _finish(run, plugins, engine if owned else None)
    if run_cache is not None:  # its writes went on while the run was recorded
        await run_cache.flush()
    if return_run:
        return run
    if run.exception is not None:
        raise run.exception
    return run.result


def _workflow_ref(workflow: Workflow, given: Any) -> str | None:
    """How a retry finds the workflow again: the name it was given by, or its file."""
    if isinstance(given, str) and names_a_workflow(given):
        return given
    return str(Path(workflow.source).resolve()) if workflow.source else None


def _finish(run: Run, plugins: FlowstagePlugins, owned: Executor | None) -> None:
    run.finished_at = now()
    if run.state != "finished":  # stages the run never reached (it failed or was cancelled early)
        for record in run.stages.values():
            if record.state in ("pending", "running"):
                record.state = "cancelled"
    if owned is not None:
        owned.close()
    plugins.notify("flowstage_run_finished", run=run)


def run_workflow(
    workflow: Any,
    input: Mapping[str, Any] | None = None,
    *,
    executor: str | Mapping[str, Any] | Executor | None = None,
    config: Mapping[str, Any] | None = None,
    namespace: str = "default",
    return_run: bool = False,
    record: bool = True,
    retry_of: str | None = None,
    cache: bool | str = True,
) -> Any:
    """Run ``workflow`` with ``input`` and return its result.

    :param workflow: a YAML file path, YAML text, a mapping, a :class:`Workflow`, or the
        name of an applied workflow or one a plugin ships
    :param input: the run input; root stages get the entries their signature names
    :param executor: a name, ``{"name": ..., **options}``, or an executor from
        :func:`create_executor` (default: the settings' executor, else ``local``)
    :param config: config data merged over the applied configs that match the workflow
    :param namespace: object-store namespace of the run
    :param return_run: return the :class:`Run` record instead of raising on failure
    :param record: keep the run in the run history
    :param retry_of: retry this run (an id or unique prefix): ``workflow`` (None: the
        original's), ``input``, ``config`` and ``executor`` default to the original's,
        and the stages that finished there are not called again (see :func:`retry_run`)
    :param cache: for stages with ``cache:``: ``True`` takes stored results, ``"refresh"``
        ignores them and stores new ones, ``False`` neither reads nor writes the cache
    :raises WorkflowError: the workflow or input is invalid (nothing ran)
    :raises StageError: a stage failed (unless ``return_run``)
    :raises UserError: the run to retry is unknown, still active, or lost an output
    """
    coro = arun_workflow(
        workflow,
        input,
        executor=executor,
        config=config,
        namespace=namespace,
        return_run=return_run,
        record=record,
        retry_of=retry_of,
        cache=cache,
    )
    return _run_sync(coro)


def retry_run(
    run_id: str,
    *,
    workflow: Any = None,
    executor: str | Mapping[str, Any] | Executor | None = None,
    return_run: bool = False,
    cache: bool | str = True,
) -> Any:
    """Retry the failed or cancelled run ``run_id``: a new run, linked to it by its
    ``retry_of``, with its input and config, the stage code as it is now, and the outputs
    of the stages that finished there reused instead of called (the finished items of a
    parameterized stage too; only its failed items run).

    :param workflow: the workflow, when the original was given inline (not a file or name)
    :param executor: default: the executor the original ran on
    :param return_run: return the :class:`Run` record instead of raising on failure
    :param cache: as for :func:`run_workflow` (the stages that run again)
    :raises UserError: no such run, still running, or a reused stage's output is missing
    """
    return run_workflow(
        workflow, executor=executor, return_run=return_run, retry_of=run_id, cache=cache
    )


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """``coro`` run to its end, also when called from inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # Called from inside an event loop (a notebook): run on a loop of our own.
    outcome: dict[str, Any] = {}

    def runner() -> None:
        try:
            outcome["value"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - a bug: record the run as failed, then show it
            outcome["error"] = exc

    thread = threading.Thread(target=runner, name="flowstage-run")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    value: T = outcome["value"]
    return value
