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
#: a map batch's timing: (start, seconds from the stage's start; duration in seconds;
#: first item index; item count)
BatchTiming = tuple[float, float, int, int]
#: a stage record keeps at most this many batch timings (see ``StageRecord.add_batch``)
MAX_BATCHES = 500
#: how the note of a stage a retry took whole from an earlier run begins
REUSED_NOTE = "reused from run "


def now() -> datetime:
    """The current time, in UTC."""
    return datetime.now(timezone.utc)


def reused_note(run_id: str) -> str:
    """The note of a stage a retry took whole from run ``run_id`` (its state stays
    ``finished``; the dashboard shows it as ``cached``)."""
    return f"{REUSED_NOTE}{run_id}"


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
    #: timings of the map's batches, a sample of at most ``MAX_BATCHES`` spread over the map
    batches: list[BatchTiming] = field(default_factory=list)
    #: batches that came back but are not in ``batches`` (the sample was full)
    batches_left_out: int = 0
    #: keep every this many-th batch; doubles each time the sample fills up
    _batch_stride: int = field(default=1, repr=False)

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def add_batch(self, offset: float, seconds: float, first: int, count: int) -> None:
        """Note that a map batch of ``count`` items from index ``first`` ran for
        ``seconds``, starting ``offset`` seconds after the stage started.

        Past ``MAX_BATCHES``, every other kept batch is dropped and from then on only
        every other one is kept (and so on), so the sample stays spread over the whole
        map in O(1) amortized time; ``batches_left_out`` counts the dropped ones.
        """
        if (len(self.batches) + self.batches_left_out) % self._batch_stride:
            self.batches_left_out += 1
            return
        if len(self.batches) >= MAX_BATCHES:
            kept = self.batches[::2]
            self.batches_left_out += len(self.batches) - len(kept)
            self.batches = kept
            self._batch_stride *= 2
            if (len(self.batches) + self.batches_left_out) % self._batch_stride:
                self.batches_left_out += 1
                return
        self.batches.append((offset, seconds, first, count))


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
