"""The time the scheduler reads and sleeps on: the wall clock, or a test's own."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    """What the scheduler needs of time."""

    def now(self) -> datetime:
        """The current time, aware."""

    async def sleep_until(self, when: datetime) -> None:
        """Return at ``when`` or soon after (at once if it has passed)."""


class WallClock:
    """The system clock; sleeps are timers of the event loop (nothing polls)."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    async def sleep_until(self, when: datetime) -> None:
        # a timer on the monotonic clock; if the wall clock moved meanwhile, sleep again
        while (delay := (when - self.now()).total_seconds()) > 0:
            await asyncio.sleep(delay)


class ManualClock:
    """A clock that moves only when told (:meth:`advance`), for tests."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._sleepers: list[tuple[datetime, asyncio.Future[None]]] = []

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, when: datetime) -> None:
        if when <= self._now:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((when, future))
        await future

    def advance(self, seconds: float) -> None:
        """Move the time on and wake the sleepers whose time came."""
        self._now += timedelta(seconds=seconds)
        waiting = []
        for when, future in self._sleepers:
            if future.done():
                continue
            if when <= self._now:
                future.set_result(None)
            else:
                waiting.append((when, future))
        self._sleepers = waiting
