"""Handles of Ray calls, and the watcher that notices when calls nobody waits for end."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from flowstage.core.calls import CallFailure

log = logging.getLogger("flowstage.executors.ray.handles")

#: how soon, and how seldom at most, calls nobody waits for are checked for their end
#: (see Watcher)
WATCH_SECONDS, WATCH_MAX_SECONDS = 0.05, 1.0


def ref_of(value: Any) -> Any | None:
    return value.value if isinstance(value, RayHandle) else None


class RayHandle:
    """A submitted call: its status and value refs, the stage it belongs to, and the
    handles among its arguments (the calls it waits for)."""

    __slots__ = ("label", "status", "upstream", "value")

    def __init__(
        self, status: Any, value: Any, label: str, upstream: tuple[RayHandle, ...] = ()
    ) -> None:
        self.status = status
        self.value = value
        self.label = label
        self.upstream = upstream

    def __repr__(self) -> str:
        return f"RayHandle({self.label!r}, {self.value!r})"


class Watcher:
    """Notices the end of calls nothing waits for yet (stages whose dependents Ray
    already chains), for their records: with one ``ray.wait`` over all of them, at
    growing intervals (``WATCH_SECONDS`` up to ``WATCH_MAX_SECONDS``), and whenever a
    call the driver waits for or fetches ends.

    A Ray callback per call (``ObjectRef.future()``) runs Python on the thread that
    also resolves the next task's arguments: on a chain of small stages those callbacks
    slowed the chain itself. One event loop's watcher serves every run on that loop.
    """

    def __init__(
        self, ray: Any, failure: Callable[[RayHandle, BaseException], CallFailure]
    ) -> None:
        self.ray = ray
        self.failure = failure
        self.pending: dict[Any, tuple[RayHandle, asyncio.Future[None]]] = {}
        self.poller: asyncio.Task[None] | None = None

    async def watch(self, handle: RayHandle) -> None:
        """Return when ``handle``'s call has ended; raise its failure."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending[handle.status] = (handle, done)
        if self.poller is None or self.poller.done():
            self.poller = asyncio.ensure_future(self._poll())
        try:
            await done
        finally:
            self.pending.pop(handle.status, None)

    async def _poll(self) -> None:
        # Each poll costs a few microseconds per watched call: poll less often as the
        # calls run longer (their records only need to follow at the pace of progress).
        interval = WATCH_SECONDS
        try:
            while self.pending:
                await asyncio.sleep(interval)
                self.check()
                interval = min(interval * 2, WATCH_MAX_SECONDS)
        except Exception as exc:  # noqa: BLE001 - Ray itself failed (shut down, disconnected): so did the calls
            for handle, done in list(self.pending.values()):
                if not done.done():
                    done.set_exception(self.failure(handle, exc))
        finally:
            self.poller = None  # the task refers to its loop: let the loop go

    def check(self) -> int:
        """Settle every watched call that has ended; how many there were."""
        if not self.pending:
            return 0
        refs = list(self.pending)
        # Statuses are tiny; fetched with the wait, so that get(timeout=0) finds them.
        ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        if not ready:
            return 0
        try:
            self.ray.get(ready, timeout=0)  # statuses are None: one call for all that succeeded
            failed = False
        except Exception:  # noqa: BLE001 - some call failed: find which, one by one below
            failed = True
        for ref in ready:
            handle, done = self.pending.pop(ref)
            if done.done():
                continue
            error = self._error(ref) if failed else None
            if error is None:
                done.set_result(None)
            else:
                with contextlib.suppress(Exception):  # read, so Ray does not log it as unhandled
                    self.ray.get(handle.value, timeout=0)
                done.set_exception(self.failure(handle, error))
        return len(ready)

    def _error(self, ref: Any) -> BaseException | None:
        try:
            self.ray.get(ref, timeout=0)
        except Exception as exc:  # noqa: BLE001 - any Ray error of the call is the stage's failure
            return exc
        return None
