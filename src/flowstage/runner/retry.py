"""Retrying a run: which stages of the original are reused, and which run again.

A stage of the workflow as it is now reuses its output from the original run when it
finished there, takes the same dependencies, and every one of them is reused too (so
its input is the one it had). A parameterized stage that failed reuses its finished
items on the same terms, and only its other items run. Everything else runs: failed,
cancelled and never-started stages, new ones, and those whose dependencies changed.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flowstage.core.errors import UnknownNameError, UserError
from flowstage.core.runs import ACTIVE_STATES, DONE_STAGE_STATES, now, reused_note
from flowstage.state.outputs import KeptOutputs, load_outputs
from flowstage.state.store import get_store

if TYPE_CHECKING:
    from flowstage.core.dag import StageGraph
    from flowstage.core.models import Workflow
    from flowstage.core.runs import Run


@dataclass
class RetryPlan:
    """A run to retry, as the history kept it."""

    run_id: str
    workflow: str | None
    input: dict[str, Any]
    namespace: str
    executor: str | None
    #: the original's stages as recorded (state, ``depends_on``)
    stages: dict[str, dict[str, Any]]
    kept: KeptOutputs
    #: the original's workflow name, as its record shows it
    workflow_name: str = ""
    #: what this retry reuses, once :meth:`choose` has seen the workflow
    reuse: dict[str, Any] = field(default_factory=dict)
    reuse_items: dict[str, dict[int, Any]] = field(default_factory=dict)

    def choose(self, workflow: Workflow, graph: StageGraph) -> Collection[str]:
        """Decide what to reuse for ``workflow`` (the workflow as it is now) with its
        checked stage ``graph``; the names of the stages reused.

        :raises UserError: a stage that finished in the original would be reused, but
            its output is gone (names the stage and why)
        """
        stages = {s.name: s for s in workflow.spec.stages}
        reuse = self.reuse
        for name in graph.topological_order():
            stage, old = stages[name], self.stages.get(name)
            depends_on = stage.depends_on
            if old is None or not all(d in reuse for d in depends_on):
                continue  # a new stage, or its input may differ
            if old.get("depends_on", depends_on) != depends_on:
                continue
            if old.get("state") in DONE_STAGE_STATES:
                if name not in self.kept.outputs:
                    raise UserError(self._missing(name))
                reuse[name] = self.kept.outputs[name]
            elif name in self.kept.items and stage.type == "parameterized":
                self.reuse_items[name] = self.kept.items[name]
        return reuse.keys()

    def mark(self, run: Run) -> None:
        """Note on ``run``'s stage records what this retry reuses: a reused stage is
        ``finished`` from the run's start (no stage hooks are called for it), a map
        that reuses items says how many."""
        at, note = now(), reused_note(self.run_id)
        for name in self.reuse:
            record = run.stages[name]
            record.state, record.note = "finished", note
            record.started_at = record.finished_at = at
        for name, items in self.reuse_items.items():
            run.stages[name].note = f"{len(items)} item(s) reused from run {self.run_id}"

    def _missing(self, name: str) -> str:
        if name in self.kept.missing:
            why = self.kept.missing[name]
        elif not self.kept.kept:
            why = (
                "the run finished without keeping its stage outputs "
                "(`store.keep_outputs: true` in the settings keeps them)"
            )
        else:
            why = "it was not kept"
        return (
            f"run {self.run_id}: cannot retry: the output of stage {name!r} is missing: {why}; "
            "run the workflow again instead"
        )

    def summary(self) -> str:
        """One line saying what the retry reuses."""
        parts = []
        if self.reuse:
            parts.append(f"{len(self.reuse)} stage(s) ({', '.join(self.reuse)})")
        for name, items in self.reuse_items.items():
            parts.append(f"{len(items)} finished item(s) of stage {name!r}")
        reused = "; ".join(parts) if parts else "nothing"
        return f"retrying run {self.run_id}: reusing {reused}"


def plan_retry(run_id: str) -> RetryPlan:
    """What the run ``run_id`` (an id or a unique prefix) kept for a retry.

    :raises UnknownNameError: no run has that id
    :raises UserError: the run has not ended
    """
    store = get_store()
    row = store.find_run(run_id)
    if row is None:
        raise UnknownNameError(f"no run {run_id!r} in the history (`flowstage runs` lists them)")
    if row["state"] in ACTIVE_STATES:
        msg = f"run {row['id']} is still {row['state']}: wait for it to end, or cancel it"
        raise UserError(msg)
    if not row.get("outputs"):
        msg = (
            f"run {row['id']} kept nothing to retry from (it was recorded by a flowstage "
            "without `runs retry`): run the workflow again instead"
        )
        raise UserError(msg)
    kept = load_outputs(row, store.path.parent)
    return RetryPlan(
        str(row["id"]),
        kept.workflow,
        dict(row.get("input") or {}),
        str(row.get("namespace") or "default"),
        row.get("executor"),
        dict(row.get("stages") or {}),
        kept,
        workflow_name=str(row.get("workflow") or ""),
    )
