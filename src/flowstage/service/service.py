"""The service: one warm executor for its whole life, a run queue with a maximum of
concurrent runs, and the events of the runs it executes."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flowstage.core.errors import ServiceClosed, ServiceError, UserError
from flowstage.core.events import WORKFLOW_FINISHED, WORKFLOW_STARTED, Event
from flowstage.core.plugin_manager import FlowstagePlugins, default_plugins
from flowstage.core.runs import Run, new_run_id, now
from flowstage.core.settings import ServiceSettings, load_settings
from flowstage.runner.api import arun_workflow, create_executor
from flowstage.service.bus import EventBus, Subscriber
from flowstage.service.metrics import ServiceMetrics
from flowstage.service.records import row_record, run_id_of, run_record
from flowstage.service.retention import prune_forever
from flowstage.service.triggers import Clock, Triggers
from flowstage.state.liveness import own_start
from flowstage.state.resources import find_workflow
from flowstage.state.store import get_store

if TYPE_CHECKING:
    from collections.abc import Callable

    from flowstage.core.executor import Executor

log = logging.getLogger("flowstage.service")

#: the message of a request the draining service refuses
CLOSED = "the service is shutting down and takes no new runs"


@dataclass
class ServiceRun:
    """A run the service holds, from submission to its end."""

    run: Run
    config: dict[str, Any] | None = None
    created_at: datetime = field(default_factory=now)
    task: asyncio.Task[None] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    #: its pending row is in the store (it had to wait for a slot)
    queued: bool = False

    @property
    def id(self) -> str:
        return self.run.id

    def record(self) -> dict[str, Any]:
        return run_record(self.run, created_at=self.created_at)

    def attach(self, run: Run) -> None:
        """From the runner: the run record it made (it replaces the placeholder)."""
        self.run = run


class Service:
    """Runs workflows on one executor started once, ``max_concurrent_runs`` at a time.

    Use it inside a running event loop: ``await service.start()``, then ``submit`` runs
    and ``await service.drain(timeout)`` and ``await service.close()`` at the end.

    :param settings: the ``service:`` settings (default: this process's settings)
    :param executor: the executor spec (default: the settings' ``executor:``)
    :param clock: the time the trigger rules' schedules follow (default: the wall clock)
    :param run_triggers: fire the applied trigger rules (``flowstage ui`` serves without)
    """

    def __init__(
        self,
        settings: ServiceSettings | None = None,
        *,
        executor: str | Mapping[str, Any] | None = None,
        plugins: FlowstagePlugins | None = None,
        clock: Clock | None = None,
        run_triggers: bool = True,
    ) -> None:
        self.settings = settings or load_settings().service
        self.plugins = plugins or default_plugins()
        self.bus = EventBus(self.plugins)
        self.metrics = ServiceMetrics()
        self.executor: Executor | None = None
        self.draining = False
        self.started_at = now()
        self.reaped = 0
        self._executor_spec = executor
        self._runs: dict[str, ServiceRun] = {}
        self._slots = asyncio.Semaphore(self.settings.max_concurrent_runs)
        self.triggers = Triggers(self, clock)
        self.run_triggers = run_triggers
        self._pruner: asyncio.Task[None] | None = None

    # life ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Mark the runs a dead service left running as failed, start the executor."""
        self.reaped = await asyncio.to_thread(get_store().reap)
        if self.reaped:
            log.warning("marked %d run(s) of a process that died as failed", self.reaped)
        executor = create_executor(self._executor_spec, plugins=self.plugins)
        await asyncio.to_thread(executor.start)
        self.executor = executor
        if self.run_triggers:
            await self.triggers.start()
        self._pruner = asyncio.create_task(prune_forever(), name="flowstage-prune")

    async def drain(self, timeout: float) -> None:
        """Take no new runs, cancel the queued ones, give the running ones ``timeout``
        seconds, then cancel them (they are recorded ``cancelled``)."""
        self.draining = True
        await self.triggers.stop()
        self._stop_pruner()
        for entry in list(self._runs.values()):
            if entry.run.state == "pending" and entry.task is not None:
                entry.task.cancel()
        tasks = [e.task for e in self._runs.values() if e.task is not None]
        if tasks:
            _done, late = await asyncio.wait(tasks, timeout=timeout)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=10)

    async def close(self) -> None:
        """Stop the executor (after :meth:`drain`)."""
        self.draining = True
        await self.triggers.stop()
        self._stop_pruner()
        executor, self.executor = self.executor, None
        if executor is not None:
            await asyncio.to_thread(executor.close)

    def trigger_fired(self, lag: float) -> None:
        """A schedule rule fired ``lag`` seconds after its slot (for ``/metrics``)."""
        self.metrics.trigger_lag.observe(max(lag, 0.0))

    def _stop_pruner(self) -> None:
        if self._pruner is not None:
            self._pruner.cancel()
            self._pruner = None

    # events -------------------------------------------------------------------------

    def publish(self, event: Event) -> None:
        """Publish ``event`` to the subscribers and the plugins (from the loop thread)."""
        self.bus.publish(event)

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Receive every event; returns a function that unsubscribes."""
        return self.bus.subscribe(subscriber)

    # runs ---------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return sum(1 for e in self._runs.values() if e.run.state == "pending")

    @property
    def active(self) -> list[ServiceRun]:
        return list(self._runs.values())

    def submit(
        self,
        workflow: str,
        input: Mapping[str, Any] | None = None,
        *,
        namespace: str = "default",
        source: str = "api",
        config: Mapping[str, Any] | None = None,
    ) -> ServiceRun:
        """Queue a run of the applied or shipped workflow ``workflow``.

        :raises ServiceClosed: the service is draining
        :raises UnknownNameError: no workflow has that name
        """
        if self.draining or self.executor is None:
            raise ServiceClosed(CLOSED)
        find_workflow(workflow, self.plugins)
        run = Run(
            id=new_run_id(),
            workflow=workflow,
            source=source,
            executor=self.executor.name,
            namespace=namespace,
            input=dict(input or {}),
        )
        entry = ServiceRun(run, dict(config) if config else None)
        self._runs[run.id] = entry
        entry.task = asyncio.create_task(self._execute(entry), name=f"flowstage-run-{run.id}")
        return entry

    async def cancel(self, identifier: str, timeout: float = 10.0) -> dict[str, Any] | None:
        """Cancel a run of this service; its record once it ended, None if it is not one
        of the service's runs in flight."""
        entry = self._runs.get(run_id_of(identifier))
        if entry is None or entry.task is None:
            return None
        entry.task.cancel()
        try:
            await asyncio.wait_for(entry.done.wait(), timeout)
        except asyncio.TimeoutError:
            msg = f"run {entry.run.id} was asked to stop but has not stopped within {timeout:g}s"
            raise ServiceError(msg) from None
        return entry.record()

    async def _execute(self, entry: ServiceRun) -> None:
        self.metrics.pending.inc()
        try:
            if self._slots.locked():
                entry.queued = True
                await asyncio.to_thread(self._write_pending, entry.run)
            await self._slots.acquire()
        except asyncio.CancelledError:
            self.metrics.pending.dec()
            await self._end_unstarted(entry, "cancelled", "the run was cancelled before it started")
            return
        self.metrics.pending.dec()
        self.metrics.running.inc()
        try:
            entry.run.state = "running"
            entry.run.started_at = now()
            self.publish(Event(WORKFLOW_STARTED, entry.record()))
            await self._run(entry)
        finally:
            self._slots.release()
            self.metrics.running.dec()
            self._end(entry)

    async def _run(self, entry: ServiceRun) -> None:
        run = entry.run
        try:
            await arun_workflow(
                run.workflow,
                run.input,
                executor=self.executor,
                config=entry.config,
                namespace=run.namespace,
                return_run=True,
                source=run.source,
                run_id=run.id,
                on_run=entry.attach,
            )
        except asyncio.CancelledError:
            if entry.run is run:  # cancelled before the runner made its record
                await self._end_unstarted(entry, "cancelled", "the run was cancelled")
        except UserError as exc:  # the workflow or its input is invalid: nothing ran
            await self._end_unstarted(entry, "failed", f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a bug; the runner recorded the run as failed
            log.exception("run %s of %s failed unexpectedly", run.id, run.workflow)
            if entry.run is run:
                await self._end_unstarted(entry, "failed", f"{type(exc).__name__}: {exc}")

    def _write_pending(self, run: Run) -> None:
        # the service's pid: if it dies, the next start (or any reader) reaps the row
        get_store().start_run(run, pid=os.getpid(), pid_start=own_start())

    async def _end_unstarted(self, entry: ServiceRun, state: str, error: str) -> None:
        run = entry.run
        run.state = "cancelled" if state == "cancelled" else "failed"
        run.error = error
        run.finished_at = now()
        for stage in run.stages.values():
            stage.state = "cancelled"
        await asyncio.to_thread(get_store().finish_run, run, pid=os.getpid(), pid_start=own_start())
        if entry.task is not None and entry.run.started_at is None:
            self._end(entry)

    def _end(self, entry: ServiceRun) -> None:
        if entry.done.is_set():
            return
        self._runs.pop(entry.id, None)
        self.metrics.ended(entry.run)
        entry.done.set()
        self.publish(Event(WORKFLOW_FINISHED, entry.record()))

    # reading ------------------------------------------------------------------------

    def get_run(self, identifier: str) -> dict[str, Any] | None:
        """The record of a run by uid or id: one in flight, else from the store
        (blocking: call it from a thread)."""
        run_id = run_id_of(identifier)
        entry = self._runs.get(run_id)
        if entry is not None:
            return entry.record()
        store = get_store()
        row = store.find_run(run_id, prefix=False)
        if row is None:
            return None
        result = store.load_result(row) if row.get("result_kind") == "json" else None
        if row.get("result_kind") == "file":
            try:
                result = store.load_result(row)
            except UserError as exc:
                result = str(exc)
        return row_record(row, result)

    def list_runs(self, workflow: str | None = None, limit: int = 10) -> list[dict[str, Any]]:
        """Records of the runs of ``workflow``, newest first (blocking)."""
        store = get_store()
        rows, _total = store.list_runs(limit=limit, workflow=workflow)
        seen = {r["id"] for r in rows}
        records = [
            e.record()
            for e in reversed(self._runs.values())
            if e.id not in seen and (workflow is None or e.run.workflow == workflow)
        ]
        for row in rows:
            record = self.get_run(row["id"])
            if record is not None:
                records.append(record)
        records.sort(key=lambda r: r["started_at"] or "", reverse=True)  # newest start first
        return records[:limit] if limit > 0 else records
