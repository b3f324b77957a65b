"""Cron slots of a schedule rule: the next one after a time, the latest ones before it.

Several expressions make one schedule (their slots merged); 5 fields are minute to weekday,
a 6th is seconds (croniter's order). Expressions are read in the rule's time zone."""

from __future__ import annotations

import zoneinfo
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from croniter import croniter as Croniter

_SECOND = timedelta(seconds=1)


class CronSchedule:
    """The merged slots of ``expressions`` in ``tz`` (an IANA name; None is UTC)."""

    def __init__(self, expressions: list[str], tz: str | None = None) -> None:
        # croniter is the service extra's: imported only when a schedule is computed
        from croniter import croniter

        self._croniter: type[Croniter] = croniter
        self.expressions = list(expressions)
        self.tz = zoneinfo.ZoneInfo(tz) if tz else timezone.utc

    def _iter(self, expression: str, start: datetime) -> Croniter:
        return self._croniter(expression, start.astimezone(self.tz))

    def next_after(self, when: datetime) -> datetime:
        """The first slot strictly after ``when`` (aware, UTC)."""
        slots = [self._iter(e, when).get_next(datetime) for e in self.expressions]
        first: datetime = min(slots)
        return first.astimezone(timezone.utc)

    def latest(self, after: datetime, until: datetime, limit: int) -> list[datetime]:
        """Up to ``limit`` slots in ``(after, until]``, the latest ones, oldest first."""
        found: set[datetime] = set()
        for expression in self.expressions:
            # get_prev is strictly before: start a second later to include ``until`` itself
            it = self._iter(expression, until.replace(microsecond=0) + _SECOND)
            for _ in range(limit):
                slot = it.get_prev(datetime).astimezone(timezone.utc)
                if slot <= after or slot > until:
                    break
                found.add(slot)
        return sorted(found)[-limit:]


def parse_schedule(expressions: list[str], tz: str | None = None) -> CronSchedule:
    """:raises ValueError: an expression croniter cannot read"""
    # lazy: only cron schedules need croniter
    from croniter import croniter

    for expression in expressions:
        if not croniter.is_valid(expression):
            msg = f"{expression!r} is not a cron expression croniter can read"
            raise ValueError(msg)
    return CronSchedule(expressions, tz)
