"""Spans that end with their tasks, for the scheduler of our local Dask cluster.

Distributed files every task group under a *span* (``distributed.spans``) and keeps
each span, with its task groups, submitted code and worker metrics, for as long as the
scheduler lives (dask/distributed#7977). A fresh default span starts whenever the
previous one is done, so an executor reused for many runs keeps about one span per run:
some 15 KB a run, and the local cluster's scheduler lives in the driver process (a soak
of 1,000 runs grew the driver by a quarter). Here a span tree is dropped once every
task in it has been forgotten: nothing can reach it any more but the dashboard's
history. Only our own cluster gets this; a scheduler the user runs is left alone.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

import dask.config
from distributed.scheduler import DEFAULT_EXTENSIONS
from distributed.spans import Span, SpansSchedulerExtension

from flowstage.executors.dask.dead_workers import DeadWorkerTopics, ForgetfulStealing


def _forgotten(group: Any) -> bool:
    """True when every task of the task ``group`` is forgotten (the scheduler then drops
    the group itself)."""
    return all(count == 0 or state == "forgotten" for state, count in group.states.items())


class PruningSpans(SpansSchedulerExtension):
    """The scheduler's spans extension, dropping span trees whose tasks are all
    forgotten each time new tasks arrive."""

    def observe_tasks(self, tss: Iterable[Any], code: Any, span_metadata: Any) -> dict[Any, Any]:
        """Drop the finished span trees, then file ``tss`` as distributed does."""
        self.prune()
        return super().observe_tasks(tss, code, span_metadata)

    def prune(self) -> int:
        """Drop every root span whose tree holds no task that is not forgotten.

        :return: how many spans (roots and their descendants) were dropped
        """
        finished = [
            root
            for root in self.root_spans
            if all(_forgotten(group) for group in root.traverse_groups())
        ]
        dropped = 0
        for root in finished:
            self.root_spans.remove(root)
            for span in list(root.traverse_spans()):
                dropped += self._forget(span)
        return dropped

    def _forget(self, span: Span) -> int:
        """Remove ``span`` from the extension's indexes; 1 if it was there."""
        if self.spans.pop(span.id, None) is None:
            return 0
        self._unlist(self.spans_search_by_name, span.name, span)
        for tag in span.name:
            self._unlist(self.spans_search_by_tag, tag, span)
        span.groups.clear()
        return 1

    @staticmethod
    def _unlist(index: dict[Any, list[Span]], key: Hashable, span: Span) -> None:
        spans = index.get(key)
        if spans is None:
            return
        spans[:] = [s for s in spans if s is not span]
        if not spans:
            del index[key]

    def heartbeat(self, ws: Any, data: dict[tuple[Hashable, ...], float]) -> None:
        """Worker metrics of a span already dropped are dropped too (a worker reports a
        task's metrics with its next heartbeat, possibly after the task is forgotten)."""
        super().heartbeat(ws, {key: value for key, value in data.items() if key[1] in self.spans})


def scheduler_extensions() -> dict[str, Any]:
    """The scheduler extensions distributed would use, with :class:`PruningSpans` for
    spans, work stealing that forgets removed workers and the removal of their event
    topics (``extensions=`` of ``distributed.Scheduler``)."""
    extensions = dict(DEFAULT_EXTENSIONS)
    # what distributed.Scheduler does itself when it gets no extensions
    if not dask.config.get("distributed.scheduler.work-stealing"):
        extensions.pop("stealing", None)
    else:
        extensions["stealing"] = ForgetfulStealing
    extensions["spans"] = PruningSpans
    extensions["flowstage-dead-worker-topics"] = DeadWorkerTopics
    return extensions
