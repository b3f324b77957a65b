"""The hooks of flowstage-sample (entry point ``sample`` in group ``flowstage.plugins``).

Every hook imports what it registers when it is called, so this module stays cheap to
import. Environment variables drive the behaviours the tests exercise:

- ``FLOWSTAGE_SAMPLE_EVENTS=PATH``: lifecycle events (and a service's events) are
  appended to PATH as JSON lines.
- ``FLOWSTAGE_SAMPLE_RAISE_IN=hook[,hook]``: those hooks raise ``RuntimeError``.
- ``FLOWSTAGE_SAMPLE_DUPLICATE_LOCAL=1``: also register an executor named ``local``
  (which conflicts with flowstage's own).
- ``FLOWSTAGE_SAMPLE_DUPLICATE_COMMAND=1``: also add a command named ``run`` (ditto).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowstage import hookimpl

if TYPE_CHECKING:
    import typer

    from flowstage.core.events import Event
    from flowstage.core.registry import Registry
    from flowstage.core.runs import Run, StageRecord

_write_lock = threading.Lock()


def _maybe_fail(hook: str) -> None:
    wanted = {h.strip() for h in os.environ.get("FLOWSTAGE_SAMPLE_RAISE_IN", "").split(",")}
    if hook in wanted:
        msg = f"flowstage-sample was asked to fail in {hook} (FLOWSTAGE_SAMPLE_RAISE_IN)"
        raise RuntimeError(msg)


@hookimpl
def flowstage_register_executors(registry: Registry) -> None:
    _maybe_fail("flowstage_register_executors")
    # An import string: the executor's module is imported only when it is used.
    registry.add("flowstage_sample.executor:InlineExecutor", name="inline")
    if os.environ.get("FLOWSTAGE_SAMPLE_DUPLICATE_LOCAL"):
        registry.add("flowstage_sample.executor:InlineExecutor", name="local")


@hookimpl
def flowstage_register_stage_types(registry: Registry) -> None:
    _maybe_fail("flowstage_register_stage_types")
    from flowstage_sample.stage_types import BatchedStage

    registry.add(BatchedStage)


@hookimpl
def flowstage_register_commands(app: typer.Typer) -> None:
    _maybe_fail("flowstage_register_commands")
    from flowstage_sample.commands import sample_squares

    app.command("sample-squares")(sample_squares)
    if os.environ.get("FLOWSTAGE_SAMPLE_DUPLICATE_COMMAND"):
        app.command("run")(sample_squares)


@hookimpl
def flowstage_workflow_paths() -> list[str]:
    _maybe_fail("flowstage_workflow_paths")
    from importlib.resources import files

    folder = files("flowstage_sample") / "workflows"
    return sorted(str(entry) for entry in folder.iterdir() if entry.name.endswith((".yaml", ".yml")))


def _record(event: str, run: Run, stage: StageRecord | None = None) -> None:
    _maybe_fail(event)
    path = os.environ.get("FLOWSTAGE_SAMPLE_EVENTS")
    if not path:
        return
    line: dict[str, Any] = {"event": event, "run": run.id, "workflow": run.workflow, "state": run.state}
    if stage is not None:
        line.update(stage=stage.name, stage_state=stage.state,
                    duration=stage.duration, error=stage.error)
    if event == "flowstage_run_finished":
        line["error"] = run.error
    with _write_lock, Path(path).open("a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")


@hookimpl
def flowstage_run_started(run: Run) -> None:
    _record("flowstage_run_started", run)


@hookimpl
def flowstage_stage_started(run: Run, stage: StageRecord) -> None:
    _record("flowstage_stage_started", run, stage)


@hookimpl
def flowstage_stage_finished(run: Run, stage: StageRecord) -> None:
    _record("flowstage_stage_finished", run, stage)


@hookimpl
def flowstage_run_finished(run: Run) -> None:
    _record("flowstage_run_finished", run)


@hookimpl
def flowstage_event_published(event: Event) -> None:
    _maybe_fail("flowstage_event_published")
    path = os.environ.get("FLOWSTAGE_SAMPLE_EVENTS")
    if path:
        line = {"event": "flowstage_event_published", "type": event.type,
                "workflow": event.data.get("workflow"), "state": event.data.get("state")}
        with _write_lock, Path(path).open("a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")
