"""Telling the driver when a pool's call has really started, so that a stage timeout
counts from then and not from submission (a queued call, or one waiting for a worker
process to be spawned, has not used any of its time yet)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable
from typing import Any


class StartNotices:
    """Callbacks run once a pool's future starts running (or ends without running).

    A pool calls :meth:`fire` right after ``set_running_or_notify_cancel()``; :meth:`add`
    runs the callback at once if that already happened.
    """

    def __init__(self) -> None:
        self._waiting: dict[concurrent.futures.Future[Any], list[Callable[[], None]]] = {}
        self._lock = threading.Lock()

    def add(self, future: concurrent.futures.Future[Any], callback: Callable[[], None]) -> None:
        """Run ``callback`` (in any thread) once ``future`` has started or is done."""
        with self._lock:
            # Checked and stored under the lock that fire() takes after the future is
            # marked running: either this sees it running or fire() sees the callback.
            if not (future.running() or future.done()):
                self._waiting.setdefault(future, []).append(callback)
                future.add_done_callback(self.fire)  # cancelled before it started
                return
        callback()

    def fire(self, future: concurrent.futures.Future[Any]) -> None:
        """``future`` has started (or ended): run and forget its callbacks."""
        with self._lock:
            callbacks = self._waiting.pop(future, [])
        for callback in callbacks:
            callback()


async def wait_started(notices: StartNotices, future: concurrent.futures.Future[Any]) -> None:
    """Return once ``future`` has started running on its pool, or is done."""
    loop = asyncio.get_running_loop()
    started: asyncio.Future[None] = loop.create_future()

    def settle() -> None:
        if not started.done():
            started.set_result(None)

    def notify() -> None:  # runs in the pool's thread
        with contextlib.suppress(RuntimeError):  # the run's loop is already closed
            loop.call_soon_threadsafe(settle)

    notices.add(future, notify)
    await started
