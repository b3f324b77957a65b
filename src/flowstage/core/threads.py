"""Thread pools that outlive a run: made on first use, shared by the runs of a process,
and made anew in a forked child (the parent's threads are not in it)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class SharedThreads:
    """A lazily made, fork-safe thread pool. Unlike ``asyncio.to_thread``, which starts
    a pool on each run's event loop and joins it at the run's end, it lives as long as
    the process."""

    def __init__(self, max_workers: int, name: str) -> None:
        """:param max_workers: threads at most
        :param name: the threads' name prefix (shown in stack dumps)"""
        self.max_workers = max_workers
        self.name = name
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._pool, self._lock = None, threading.Lock()

    def _get(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.max_workers, thread_name_prefix=self.name
                )
            return self._pool

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """Start ``fn(*args)`` in one of the threads."""
        return self._get().submit(fn, *args)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in one of the threads, with this task's context variables."""
        call = functools.partial(contextvars.copy_context().run, fn, *args)
        return await asyncio.get_running_loop().run_in_executor(self._get(), call)
