"""The timeline (Gantt chart) of a run: one bar per stage from its start to its end.

A run records each stage's start and end, and for a map how many items are done of
how many; single items and batches have no times of their own in the record, so a
map's bar carries its item count instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from flowstage.state.rows import parse_time


@dataclass(frozen=True)
class Bar:
    """A stage's bar: where it starts and how long it is, in percent of the run's span."""

    stage: str
    state: str
    left: float
    width: float
    seconds: float | None
    items: str | None


@dataclass(frozen=True)
class Timeline:
    """The bars of a run's stages that started, in start order, and the span they cover."""

    bars: list[Bar]
    span: float
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
        return Timeline([], 0.0, waiting)
    origin = min(t[1] for t in times)
    span = max((max(t[2] for t in times) - origin).total_seconds(), 1e-6)
    bars = []
    for name, start, end, entry in sorted(times, key=lambda t: t[1]):
        left = (start - origin).total_seconds() / span * 100
        width = max((end - start).total_seconds() / span * 100, 0.3)
        total = entry.get("items_total")
        items = f"{entry.get('items_done', 0)}/{total} items" if total is not None else None
        seconds = (end - start).total_seconds() if entry.get("finished_at") else None
        bars.append(
            Bar(
                name,
                str(entry.get("state", "pending")),
                left,
                min(width, 100 - left),
                seconds,
                items,
            )  # fmt: skip
        )
    return Timeline(bars, span, waiting)
