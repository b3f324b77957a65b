"""Stage functions: plain Python, named in workflows by their import string."""

from __future__ import annotations

import os
import threading

from flowstage import get_run_context


def make_numbers(count: int) -> list[int]:
    """Root stage: ``count`` comes from the run input (``--count 5`` on the CLI)."""
    return list(range(count))


def square_batch(batch: list[int]) -> list[int]:
    """A ``type: batched`` target: gets a list of items, returns one result per item."""
    return [n * n for n in batch]


def batch_sizes(batch: list[int]) -> list[int]:
    """Each item's result is the size of the batch it travelled in (shows the batching)."""
    return [len(batch)] * len(batch)


def total(values: list[int]) -> int:
    return sum(values)


def where_am_i() -> dict[str, object]:
    """Which process and executor ran this stage."""
    context = get_run_context()
    return {"pid": os.getpid(), "thread": threading.current_thread().name,
            "executor": context.executor, "stage": context.stage}


async def async_double(count: int) -> int:
    return 2 * count
