"""The timeline (Gantt chart) of a run: one bar per stage from its start to its end,
and under a map's bar the batches it ran.

A run records each stage's start and end, for a map how many items are done of how
many, and a sample of its batches' timings (start offset, duration, first item, count;
see ``StageRecord.add_batch``). Batches that overlap in time are packed into rows.
Rows written before batch timings were recorded simply have no batches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from flowstage.service.dashboard.queries import display_state
from flowstage.state.rows import parse_time

#: a map's batches are packed into at most this many rows under its bar
BATCH_ROWS = 8


@dataclass(frozen=True)
class BatchBar:
    """A map batch's bar, in percent of the run's span, on a row under its stage's bar."""

    left: float
    width: float
    row: int
    first: int
    last: int
    seconds: float


@dataclass(frozen=True)
class Bar:
    """A stage's bar: where it starts and how long it is, in percent of the run's span."""

    stage: str
    state: str
    left: float
    width: float
    seconds: float | None
    items: str | None
    batches: list[BatchBar] = field(default_factory=list)
    #: rows the batches take (0: none)
    batch_rows: int = 0
    #: batches that ran but were not kept in the record's sample
    batches_left_out: int = 0


@dataclass(frozen=True)
class Timeline:
    """The bars of a run's stages that started, in start order, and the stages that
    have not."""

    bars: list[Bar]
    not_started: list[str]


def timeline(stages: Mapping[str, Mapping[str, Any]], now: datetime | None = None) -> Timeline:
    """The timeline of ``stages`` (a run's stage records by name); a stage still running
    ends at ``now``."""
    now = now or datetime.now(timezone.utc)
    times: list[tuple[str, datetime, datetime, Mapping[str, Any]]] = []
    waiting = []
    for name, entry in stages.items():
        start = parse_time(entry.get("started_at"))
        if start is None:
            waiting.append(name)
            continue
        end = parse_time(entry.get("finished_at")) or max(now, start)
        times.append((name, start, end, entry))
    if not times:
        return Timeline([], waiting)
    origin = min(t[1] for t in times)
    span = max((max(t[2] for t in times) - origin).total_seconds(), 1e-6)
    bars = []
    for name, start, end, entry in sorted(times, key=lambda t: t[1]):
        left = (start - origin).total_seconds() / span * 100
        width = max((end - start).total_seconds() / span * 100, 0.3)
        total = entry.get("items_total")
        items = f"{entry.get('items_done', 0)}/{total} items" if total is not None else None
        seconds = (end - start).total_seconds() if entry.get("finished_at") else None
        batches = _batch_bars(entry.get("batches"), (start - origin).total_seconds(), span)
        bars.append(
            Bar(
                name,
                display_state(entry),
                left,
                min(width, 100 - left),
                seconds,
                items,
                batches,
                max((b.row + 1 for b in batches), default=0),
                int(entry.get("batches_left_out") or 0),
            )  # fmt: skip
        )
    return Timeline(bars, waiting)


def _batch_bars(raw: Any, stage_start: float, span: float) -> list[BatchBar]:
    """Bars of a stage's recorded batches (``[offset, seconds, first, count]`` lists,
    offsets from the stage's start at ``stage_start`` seconds into the run), each on
    the first row free at its start; past ``BATCH_ROWS`` rows, on the one free soonest.

    A batch's start is estimated (when the driver got it back, less its compute time),
    so a worker's next batch may seem to start a little before its last one ended:
    overlaps shorter than a quarter of a percent of the span do not open a new row."""
    if not isinstance(raw, list):
        return []
    timings = sorted(
        (float(t[0]), float(t[1]), int(t[2]), int(t[3]))
        for t in raw
        if isinstance(t, list | tuple) and len(t) == 4
    )
    slack = span / 400
    row_ends: list[float] = []
    out = []
    for offset, seconds, first, count in timings:
        begin = stage_start + offset
        row = next((r for r, end in enumerate(row_ends) if end <= begin + slack), None)
        if row is None and len(row_ends) < BATCH_ROWS:
            row_ends.append(0.0)
            row = len(row_ends) - 1
        elif row is None:
            row = min(range(len(row_ends)), key=row_ends.__getitem__)
        row_ends[row] = begin + seconds
        left = min(begin / span * 100, 100.0)
        width = min(max(seconds / span * 100, 0.1), 100 - left)
        out.append(BatchBar(left, width, row, first, first + count - 1, seconds))
    return out
