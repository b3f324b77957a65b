"""Running a map: items go to the executor in batches sized from measured item times.

Like joblib's ``batch_size="auto"``: the first items go one per batch, one batch per
worker; from the measured time per item, later batches are sized to last about the
executor's ``batch_seconds`` (small items are amortized, slow ones stay apart), and
never so large that a worker would sit idle at the end. Bookkeeping is O(1) per batch.
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flowstage.core.calls import run_batch

if TYPE_CHECKING:
    from flowstage.core.scheduler import StageExecution

#: items at least this large (by ``sys.getsizeof``) are never batched together
_BIG_ITEM_BYTES = 1 << 20
#: a batch should not carry more than this many bytes of items
_BATCH_BYTES = 16 << 20


class BatchSizer:
    """Chooses how many items the next batch gets."""

    def __init__(self, total: int, workers: int, target_seconds: float, item_bytes: int = 0) -> None:
        self.total = total
        self.workers = max(1, workers)
        self.target = target_seconds
        self.per_item: float | None = None
        self.byte_cap = max(1, _BATCH_BYTES // item_bytes) if item_bytes else total
        if item_bytes >= _BIG_ITEM_BYTES:
            self.byte_cap = 1

    @property
    def max_in_flight(self) -> int:
        """Batches to keep submitted: one per worker until items have been timed."""
        return self.workers if self.per_item is None else 2 * self.workers

    def next_size(self, remaining: int) -> int:
        if self.per_item is None:
            return 1
        wanted = self.target / self.per_item if self.per_item > 0 else remaining
        fair = math.ceil(remaining / self.workers)
        return max(1, min(int(wanted), fair, self.byte_cap, remaining))

    def observe(self, count: int, seconds: float) -> None:
        sample = seconds / max(1, count)
        self.per_item = sample if self.per_item is None else 0.5 * (self.per_item + sample)


async def run_map(execution: StageExecution, items: Sequence[Any], extra_args: tuple[Any, ...],
                  extra_kwargs: dict[str, Any]) -> list[Any]:
    """Map the stage's target over ``items``; the outputs in item order.

    Failed items of a partial-failure map are left out and recorded on the stage.

    :raises CallFailure: an item failed (and partial failure is not allowed)
    """
    record = execution.record
    executor = execution.executor
    total = len(items)
    record.items_total = total
    if total == 0:
        return []
    sizer = BatchSizer(total, executor.parallelism, executor.batch_seconds, _size_hint(items[0]))
    task = execution.map_task
    resources = execution.stage.resources
    label = execution.stage.name
    out: list[Any] = [None] * total
    failed: list[tuple[int, str, int]] = []
    pending: dict[asyncio.Future[Any], tuple[int, Any]] = {}
    next_start = 0
    try:
        while next_start < total or pending:
            while next_start < total and len(pending) < sizer.max_in_flight:
                size = sizer.next_size(total - next_start)
                chunk = items[next_start:next_start + size]
                handle = await executor.submit(run_batch, task, next_start, chunk, extra_kwargs, *extra_args,
                                               resources=resources, label=label)
                execution.track(handle)
                pending[asyncio.ensure_future(executor.result(handle))] = (next_start, handle)
                next_start += size
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                start, handle = pending.pop(future)
                execution.untrack(handle)
                values, failures, attempts, seconds = future.result()
                out[start:start + len(values)] = values
                sizer.observe(len(values), seconds)
                record.items_done += len(values)
                record.attempts = max(record.attempts, attempts)
                failed.extend(failures)
    finally:
        if pending:
            for future in pending:
                future.cancel()
            executor.cancel([handle for _, handle in pending.values()])
    if not failed:
        return out
    failed.sort()
    record.failed_items = [{"index": index, "error": error, "attempts": attempts} for index, error, attempts in failed]
    dropped = {index for index, _, _ in failed}
    return [value for index, value in enumerate(out) if index not in dropped]


def _size_hint(item: Any) -> int:
    try:
        return sys.getsizeof(item)
    except Exception:
        return 0
