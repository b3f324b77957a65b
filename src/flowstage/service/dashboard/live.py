"""Live updates for the dashboard's open pages, as server-sent events.

Runs of this service announce themselves: run starts and ends come from its event bus,
stage starts and ends from the ``flowstage_stage_*`` hooks, without reading the store.
Runs of other processes (the CLI writes the same store) are noticed by a cheap look at
the store (the newest ``seq`` and the active rows' state and stages) every
``poll_interval`` seconds, and that look runs only while at least one page listens:
nobody watching, no reading. A heartbeat that changes nothing else is no change (a page
would refetch on every heartbeat of every active run).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from flowstage.core.events import WORKFLOW_FINISHED, WORKFLOW_STARTED
from flowstage.core.plugin_manager import hookimpl
from flowstage.state.store import get_store

if TYPE_CHECKING:
    from flowstage.core.events import Event
    from flowstage.core.runs import Run, StageRecord
    from flowstage.service.service import Service

log = logging.getLogger("flowstage.service")

#: what the store looks like to the watcher: newest seq, and each active row's id, state
#: and a hash of its stages (its progress)
Snapshot = tuple[int, frozenset[tuple[Any, ...]]]


class LiveHub:
    """The open event streams of one service, and what feeds them.

    :param poll_interval: seconds between two looks at the store while a page listens
    :param keepalive: seconds between comments that keep an idle stream open
    """

    def __init__(self, service: Service, poll_interval: float = 2.0, keepalive: float = 15.0):
        self.service = service
        self.poll_interval = poll_interval
        self.keepalive = keepalive
        #: how many times the watcher read the store (``/status`` shows it)
        self.polls = 0
        self._queues: set[asyncio.Queue[dict[str, Any]]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsubscribe: Any = None
        self._relay = _StageRelay(self)
        self._closed = False

    @property
    def clients(self) -> int:
        """How many pages listen now."""
        return len(self._queues)

    def stats(self) -> dict[str, Any]:
        """Listeners, looks at the store so far, and whether the watcher runs."""
        watching = self._watcher is not None and not self._watcher.done()
        return {"clients": self.clients, "store_polls": self.polls, "watching": watching}

    # feeding --------------------------------------------------------------------------

    def attach(self) -> None:
        """Listen to the service's bus and to the stage hooks of its runs."""
        if self._unsubscribe is None:
            self._unsubscribe = self.service.subscribe(self._on_event)
            self.service.plugins.register(self._relay, name=f"dashboard-live-{id(self)}")

    async def close(self) -> None:
        """Stop for good (the app's shutdown): cancel the store watcher, leave the bus
        and the stage hooks. Open streams end as the service drains."""
        self._closed = True
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
            self.service.plugins.unregister(self._relay)
        watcher, self._watcher = self._watcher, None
        if watcher is not None and not watcher.done():
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    def _on_event(self, event: Event) -> None:
        if event.type in (WORKFLOW_STARTED, WORKFLOW_FINISHED):
            data = event.data
            self.broadcast({"run": data.get("id"), "state": data.get("state"), "why": "run"})

    def stage_changed(self, run_id: str, stage: str, state: str) -> None:
        """A stage of ``run_id`` started or ended (from whatever thread runs the stage)."""
        if not self._queues or self._loop is None:
            return
        change = {"run": run_id, "stage": stage, "state": state, "why": "stage"}
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody listens anymore
            self._loop.call_soon_threadsafe(self.broadcast, change)

    def broadcast(self, change: dict[str, Any]) -> None:
        """Hand ``change`` to every open stream (a stream that lags drops the oldest)."""
        for queue in list(self._queues):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(change)

    # streaming ------------------------------------------------------------------------

    async def stream(self) -> AsyncIterator[str]:
        """The text of one server-sent event stream, until the client leaves or the
        service drains."""
        self._loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=256)
        self._queues.add(queue)
        if not self._closed and (self._watcher is None or self._watcher.done()):
            self._watcher = asyncio.create_task(self._watch(), name="flowstage-dashboard-watch")
        try:
            yield "retry: 3000\nevent: hello\ndata: {}\n\n"
            idle = 0.0
            while not self.service.draining:
                try:
                    change = await asyncio.wait_for(queue.get(), timeout=1.0)
                except asyncio.TimeoutError:
                    idle += 1.0
                    if idle >= self.keepalive:
                        idle = 0.0
                        yield ": keepalive\n\n"
                    continue
                idle = 0.0
                yield f"event: change\ndata: {json.dumps(change)}\n\n"
        finally:
            self._queues.discard(queue)

    async def _watch(self) -> None:
        """Look at the store every ``poll_interval`` seconds while a page listens."""
        before: Snapshot | None = None
        while self._queues:
            now: Snapshot | None
            try:
                now = await asyncio.to_thread(self._snapshot)
            except Exception as exc:  # noqa: BLE001 - a busy store must not end the live updates
                log.warning("dashboard: could not read the store: %s", exc)
                now = before
            if before is not None and now is not None and now != before:
                changed = {row[0] for row in now[1] ^ before[1]}
                if now[0] != before[0] or changed:
                    self.broadcast({"run": None, "runs": sorted(changed), "why": "store"})
            before = now
            await asyncio.sleep(self.poll_interval)

    def _snapshot(self) -> Snapshot:
        self.polls += 1
        store = get_store()
        if not store.path.exists():
            return 0, frozenset()
        newest = store.query("SELECT coalesce(max(seq), 0) FROM runs")[0][0]
        active = store.query(
            "SELECT id, state, stages FROM runs WHERE state IN ('pending', 'running')"
        )
        return int(newest), frozenset((i, state, hash(stages)) for i, state, stages in active)


class _StageRelay:
    """Passes the stage hooks of this process's runs to a :class:`LiveHub`."""

    def __init__(self, hub: LiveHub) -> None:
        self.hub = hub

    @hookimpl
    def flowstage_stage_started(self, run: Run, stage: StageRecord) -> None:
        self.hub.stage_changed(run.id, stage.name, stage.state)

    @hookimpl
    def flowstage_stage_finished(self, run: Run, stage: StageRecord) -> None:
        self.hub.stage_changed(run.id, stage.name, stage.state)
