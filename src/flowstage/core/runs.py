"""Run records: what happened during a run, stage by stage."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

#: where a run is: queued, going, or how it ended
RunState = Literal["pending", "running", "finished", "failed", "cancelled"]
#: where a stage of a run is
StageState = Literal["pending", "running", "finished", "cached", "failed", "cancelled"]
#: stage states of a stage that has its output (``cached``: taken from the stage cache)
DONE_STAGE_STATES: tuple[StageState, ...] = ("finished", "cached")
#: run states of a run that has not ended
ACTIVE_STATES: tuple[RunState, ...] = ("pending", "running")
#: who started a run
RunSource = Literal["api", "cli", "background", "trigger"]


def now() -> datetime:
    """The current time, in UTC."""
    return datetime.now(timezone.utc)


def new_run_id() -> str:
    """A fresh run id: 12 hex digits."""
    return uuid.uuid4().hex[:12]


@dataclass
class StageRecord:
    """One stage of a run: state, times, attempts, map progress and failed items."""

    name: str
    state: StageState = "pending"
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    items_total: int | None = None
    items_done: int = 0
    #: the map gets its items from an upstream map that is still running (total grows)
    items_growing: bool = False
    failed_items: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    #: the stages whose outputs this one took (a retry compares them with the original's)
    depends_on: list[str] = field(default_factory=list)
    #: how the stage got its output when it was not called: ``reused from run ID``
    note: str | None = None

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass
class Run:
    """A workflow run and what happened to each of its stages."""

    id: str
    workflow: str
    source: str = "api"  # a RunSource; plugins may add their own
    executor: str = "local"
    namespace: str = "default"
    input: dict[str, Any] = field(default_factory=dict)
    state: RunState = "pending"
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: Any = None
    error: str | None = None
    exception: BaseException | None = None
    stages: dict[str, StageRecord] = field(default_factory=dict)
    #: keep the run in the run history (the recorder plugin reads this)
    record: bool = True
    #: the run this one retries
    retry_of: str | None = None
    #: how to find the workflow again for a retry: its file, or its applied name
    workflow_ref: str | None = None
    #: the ``config=`` given to the run, merged over the applied configs again by a retry
    config: dict[str, Any] | None = None
    #: finished stages' outputs, kept when the run failed or was cancelled (or when
    #: ``store.keep_outputs`` keeps them for every run); None: not kept
    outputs: dict[str, Any] | None = None
    #: the finished items of maps that failed, by stage and item index
    item_outputs: dict[str, dict[int, Any]] = field(default_factory=dict)

    @property
    def failed_items(self) -> dict[str, list[dict[str, Any]]]:
        """Items left out by partial-failure maps, by stage."""
        return {name: s.failed_items for name, s in self.stages.items() if s.failed_items}

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()
