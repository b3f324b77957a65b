"""Running a map: items go to the executor in batches sized from measured item times.

Like joblib's ``batch_size="auto"``: the first items go one per batch, one batch per
worker; from the measured time per item, later batches are sized to last about the
executor's ``batch_seconds`` (small items are amortized, slow ones stay apart), and
never so large that a worker would sit idle at the end. Bookkeeping is O(1) per batch,
including the batch's timing kept on the stage's record for the dashboard's timeline.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from flowstage.core.calls import ITEM_TRACEBACKS, ItemFailure, run_batch
from flowstage.core.runs import now

if TYPE_CHECKING:
    from flowstage.core.calls import StageTask
    from flowstage.core.executor import Executor
    from flowstage.core.models import Stage
    from flowstage.core.runs import StageRecord


class MapHost(Protocol):
    """What a map needs of the stage it runs for (the scheduler's ``StageExecution``)."""

    record: StageRecord
    executor: Executor
    stage: Stage
    #: item outputs known before the map runs (a retry's finished items), by index
    known_items: dict[int, Any] | None
    #: the outputs of the items that finished, by index, set when the map fails
    finished_items: dict[int, Any]

    @property
    def map_task(self) -> StageTask: ...

    def track(self, handle: Any) -> None: ...

    def untrack(self, handle: Any) -> None: ...

    def returned(self, start: int, values: list[Any], failed: set[int]) -> None:
        """A batch came back: items ``start...`` have ``values`` (those at positions in
        ``failed`` failed and are placeholders)."""
        ...


#: items at least this large (by ``sys.getsizeof``) are never batched together
_BIG_ITEM_BYTES = 1 << 20
#: a batch should not carry more than this many bytes of items
_BATCH_BYTES = 16 << 20


class BatchSizer:
    """Chooses how many items the next batch gets."""

    def __init__(self, workers: int, target_seconds: float, item_bytes: int = 0) -> None:
        self.workers = max(1, workers)
        self.target = target_seconds
        self.per_item: float | None = None
        self.byte_cap = max(1, _BATCH_BYTES // item_bytes) if item_bytes else sys.maxsize
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


class MapStream:
    """A map's outputs while it runs: chunks ``(start, values)`` in the order they
    complete, then the whole output list.

    A parameterized stage that maps over another one's output consumes its chunks as
    they come (when the upstream map allows no partial failure, its item positions are
    final), so the two maps overlap instead of the second waiting for the first.
    """

    def __init__(self) -> None:
        self._chunks: list[tuple[int, list[Any]]] = []
        self._changed = asyncio.Event()
        self._done: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()

    def add(self, start: int, values: list[Any]) -> None:
        self._chunks.append((start, values))
        self._wake()

    def finish(self, output: list[Any]) -> None:
        if not self._done.done():
            self._done.set_result(output)
        self._wake()

    def fail(self, error: BaseException) -> None:
        if not self._done.done():
            self._done.set_exception(error)
            self._done.exception()  # consumers may all be gone: not an unretrieved error
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def chunks(self) -> AsyncIterator[tuple[int, list[Any]]]:
        """Every chunk, as it arrives; raises the map's error if it failed."""
        seen = 0
        while True:
            changed = self._changed
            while seen < len(self._chunks):
                yield self._chunks[seen]
                seen += 1
            if self._done.done():
                self._done.result()
                return
            await changed.wait()

    async def result(self) -> list[Any]:
        """The whole output, once the map is done."""
        return await asyncio.shield(self._done)


async def run_map(
    execution: MapHost,
    items: Sequence[Any] | MapStream,
    extra_args: tuple[Any, ...],
    extra_kwargs: dict[str, Any],
    stream: MapStream | None = None,
) -> list[Any]:
    """Map the stage's target over ``items`` (a sequence, or another map's chunks as they
    come); the outputs in item order. Completed batches are also added to ``stream``.

    Failed items of a partial-failure map are left out and recorded on the stage.

    :raises CallFailure: an item failed (and partial failure is not allowed)
    """
    try:
        output = await _run_map(execution, items, extra_args, extra_kwargs, stream)
    except BaseException as exc:
        if stream is not None:
            stream.fail(exc)
        raise
    if stream is not None:
        stream.finish(output)
    return output


async def _run_map(
    execution: MapHost,
    items: Sequence[Any] | MapStream,
    extra_args: tuple[Any, ...],
    extra_kwargs: dict[str, Any],
    stream: MapStream | None,
) -> list[Any]:
    record = execution.record
    executor = execution.executor
    task = execution.map_task
    resources = execution.stage.resources
    label = execution.stage.name
    #: items not yet submitted, as (start, items) runs
    queued: list[tuple[int, Sequence[Any]]] = []
    waiting = 0  # items in ``queued``
    incoming: AsyncIterator[tuple[int, list[Any]]] | None = None
    if isinstance(items, MapStream):
        incoming = items.chunks()
        record.items_total = 0
        record.items_growing = True
    else:
        record.items_total = len(items)
        if not items:
            return []
        queued.append((0, items))
        waiting = len(items)
    out: list[Any] = []
    #: the batches that came back, to tell a failed map's finished items
    returned: list[tuple[int, list[Any]]] = []
    known = execution.known_items
    if known and not isinstance(items, MapStream):
        queued, waiting, out = _skip_known(items, known, stream)
        record.items_done = len(items) - waiting
        returned.extend((index, [out[index]]) for index in known if index < len(items))
    sizer: BatchSizer | None = None
    #: the stage's start on the monotonic clock: batch offsets are measured from it
    origin = time.monotonic() - _since_start(record)
    failed: list[ItemFailure] = []
    pending: dict[asyncio.Future[Any], tuple[int, Any]] = {}
    arrival: asyncio.Future[tuple[int, list[Any]]] | None = None
    try:
        while queued or pending or incoming is not None:
            if sizer is None and queued:
                sizer = BatchSizer(
                    executor.parallelism, executor.batch_seconds, _size_hint(queued[0][1][0])
                )
            while queued and sizer is not None and len(pending) < sizer.max_in_flight:
                start, run = queued[0]
                size = sizer.next_size(waiting)
                chunk, rest = run[:size], run[size:]
                if len(rest):
                    queued[0] = (start + size, rest)
                else:
                    queued.pop(0)
                waiting -= len(chunk)
                handle = await executor.submit(
                    run_batch,
                    task,
                    start,
                    chunk,
                    extra_kwargs,
                    *extra_args,
                    resources=resources,
                    label=label,
                )
                execution.track(handle)
                pending[asyncio.ensure_future(executor.result(handle))] = (start, handle)
            if incoming is not None and arrival is None:
                arrival = asyncio.ensure_future(anext(incoming))
            done, _ = await asyncio.wait(
                [*pending, *([arrival] if arrival else [])], return_when=asyncio.FIRST_COMPLETED
            )
            if arrival is not None and arrival in done:
                done.discard(arrival)
                try:
                    start, values = arrival.result()
                except StopAsyncIteration:
                    incoming = None
                    record.items_growing = False
                else:
                    if values:
                        queued.append((start, values))
                        waiting += len(values)
                        record.items_total += len(values)
                arrival = None
            for future in done:
                start, handle = pending.pop(future)
                execution.untrack(handle)
                values, failures, attempts, seconds = future.result()
                if len(out) < start + len(values):
                    out.extend([None] * (start + len(values) - len(out)))
                out[start : start + len(values)] = values
                if sizer is not None:
                    sizer.observe(len(values), seconds)
                received = time.monotonic() - origin
                record.add_batch(max(0.0, received - seconds), seconds, start, len(values))
                record.items_done += len(values)
                record.attempts = max(record.attempts, attempts)
                failed.extend(failures)
                returned.append((start, values))
                execution.returned(start, values, {failure[0] for failure in failures})
                if stream is not None and not failures:
                    stream.add(start, values)
    except BaseException:
        for future, (start, _) in pending.items():  # batches that came back meanwhile
            if future.done() and not future.cancelled() and future.exception() is None:
                values, failures, _, _ = future.result()
                if not failures:
                    returned.append((start, values))
        execution.finished_items = {
            start + k: value for start, values in returned for k, value in enumerate(values)
        }
        raise
    finally:
        record.items_growing = False
        if arrival is not None:
            arrival.cancel()
        if pending:
            for future in pending:
                future.cancel()
            executor.cancel([handle for _, handle in pending.values()])
    if not failed:
        return out
    failed.sort()
    record.failed_items = []
    kept = 0
    for index, error, attempts, text in failed:
        item: dict[str, Any] = {"index": index, "error": error, "attempts": attempts}
        if text and kept < ITEM_TRACEBACKS:
            item["traceback"] = text
            kept += 1
        record.failed_items.append(item)
    dropped = {index for index, *_ in failed}
    return [value for index, value in enumerate(out) if index not in dropped]


def _skip_known(
    items: Sequence[Any], known: dict[int, Any], stream: MapStream | None
) -> tuple[list[tuple[int, Sequence[Any]]], int, list[Any]]:
    """``(queued runs, items waiting, outputs)`` of a map whose ``known`` items are
    not called again: the runs between them are queued, their outputs placed (and
    streamed) at once."""
    out: list[Any] = [None] * len(items)
    queued: list[tuple[int, Sequence[Any]]] = []
    waiting = 0
    index = 0
    while index < len(items):
        end = index
        if index in known:
            while end < len(items) and end in known:
                out[end] = known[end]
                end += 1
            if stream is not None:
                stream.add(index, out[index:end])
        else:
            while end < len(items) and end not in known:
                end += 1
            queued.append((index, items[index:end]))
            waiting += end - index
        index = end
    return queued, waiting, out


def _since_start(record: StageRecord) -> float:
    """Seconds since the stage of ``record`` started (0 if it has no start yet)."""
    if record.started_at is None:
        return 0.0
    return max(0.0, (now() - record.started_at).total_seconds())


def _size_hint(item: Any) -> int:
    try:
        return sys.getsizeof(item)
    except Exception:  # noqa: BLE001 - an object without a size is batched as small
        return 0
