"""Hook specifications: the contract between flowstage and its plugins.

A plugin is a module or object, named by an entry point in group ``flowstage.plugins``,
whose functions are marked with ``@flowstage.hookimpl`` and named after these specs.
Arguments may be added to a hook in later versions, never renamed or removed; an
implementation may accept any subset of them.

Lifecycle while a workflow runs (all in the driver process)::

    flowstage_run_started(run)
        flowstage_stage_started(run, stage)      # as each stage starts
        flowstage_stage_finished(run, stage)     # as it finishes or fails
    flowstage_run_finished(run)

A service (``flowstage serve``) also publishes events, such as a run that started or
finished, through ``flowstage_event_published(event)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import typer

    from flowstage.core.events import Event
    from flowstage.core.registry import Registry
    from flowstage.core.runs import Run, StageRecord

PROJECT = "flowstage"
hookspec = pluggy.HookspecMarker(PROJECT)


@hookspec
def flowstage_register_executors(registry: Registry[Any]) -> None:
    """Add executor classes (subclasses of :class:`flowstage.core.executor.Executor`).

    Called once when the plugin manager is built.

    :param registry: call ``registry.add(MyExecutor)``; the class's ``name`` is what users
        select with ``--executor`` or ``executor: {name: ...}``. Or register an import
        string, ``registry.add("package.module:MyExecutor", name="mine")``, so the
        module (and its engine) is imported only when the executor is used. A name
        registered twice is an error naming both distributions.
    """


@hookspec
def flowstage_register_stage_types(registry: Registry[Any]) -> None:
    """Add stage types (subclasses of :class:`flowstage.core.stage_types.StageType`).

    Called once when the plugin manager is built.

    :param registry: call ``registry.add(MyStageType)``; the class's ``name`` is what a
        workflow writes as a stage's ``type:``.
    """


@hookspec
def flowstage_register_commands(app: typer.Typer) -> None:
    """Add commands to the ``flowstage`` command line.

    Called once when the CLI is built, before arguments are parsed.

    :param app: the root typer application: call ``app.command()(fn)`` or
        ``app.add_typer(sub_app, name=...)``.
    """


@hookspec
def flowstage_workflow_paths() -> list[str]:  # type: ignore[empty-body]  # a hook spec has no body
    """Workflow files this plugin ships, runnable by their ``metadata.name``.

    Called once, when the plugin manager is built; the files are read when a workflow is
    looked up by name and by ``flowstage get workflows``.

    :return: paths of YAML files (absolute, or made so with ``importlib.resources``)
    """


@hookspec
def flowstage_run_started(run: Run) -> None:
    """A run is about to start its first stage.

    Called in the driver process. An exception here is logged and the run goes on.

    :param run: the run record (``id``, ``workflow``, ``input``, ``executor``, ``state``)
    """


@hookspec
def flowstage_run_finished(run: Run) -> None:
    """A run has ended: ``run.state`` is ``finished``, ``failed`` or ``cancelled``.

    Called in the driver process. An exception here is logged and the run goes on.

    :param run: the run record, with ``result`` or ``error`` and every stage's record
    """


@hookspec
def flowstage_stage_started(run: Run, stage: StageRecord) -> None:
    """A stage has started (its first call or map batch is being submitted).

    Called in the driver process. An exception here is logged and the run goes on. Not
    called for a stage whose output a retry reuses: it never starts, and its record is
    ``finished`` with a ``note`` (``reused from run ID``) from the run's start, as
    :func:`flowstage_run_started` sees it.

    :param run: the run record
    :param stage: the stage's record (``name``, ``state``, ``started_at``)
    """


@hookspec
def flowstage_stage_finished(run: Run, stage: StageRecord) -> None:
    """A stage has finished, failed or been cancelled.

    Called in the driver process, once for each stage that started
    (:func:`flowstage_stage_started`). An exception here is logged and the run goes on.

    :param run: the run record
    :param stage: the stage's record (``state``: ``finished``, ``cached`` (taken from
        the stage cache), ``failed`` or ``cancelled``; ``started_at``, ``finished_at``,
        ``attempts``, ``failed_items``, ``error``)
    """


@hookspec
def flowstage_event_published(event: Event) -> None:
    """An event was published in a service (``flowstage serve``).

    Called in the service process, in its event loop thread, for every event: the
    service's own (``com.event.workflow.workflow_started`` and
    ``com.event.workflow.workflow_finished``, whose ``data`` is the run record as the API
    returns it) and those that plugins publish with ``Service.publish``. Keep it quick:
    hand slow work to a thread or a task. An exception here is logged and the service
    goes on.

    :param event: the event: ``type`` (dotted name), ``source``, ``data`` (JSON-ready
        mapping), ``id`` and ``time``
    """
