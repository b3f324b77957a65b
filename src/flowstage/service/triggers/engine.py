"""The trigger rules a service runs: schedules on timers, condition rules on its events.

Rules are read from the store at start and again when they change (the API's routes
call :meth:`Triggers.refresh`; a cheap check of the store's resource generation every
``refresh_every`` seconds catches ``flowstage apply`` to the app dir). Evaluating an event
never reads the store: condition rules sit in an in-memory :class:`RuleIndex`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from flowstage.core.cron import CronSchedule, parse_schedule
from flowstage.core.events import Event
from flowstage.core.models import TriggerRule
from flowstage.core.targets import resolve_target
from flowstage.service.triggers.clock import Clock, WallClock
from flowstage.service.triggers.conditions import RuleIndex
from flowstage.state import fires
from flowstage.state.store import get_store

log = logging.getLogger("flowstage.triggers")

#: the ``type`` of the event a dotted-path action of a schedule receives
SCHEDULE_FIRED = "com.event.trigger.schedule_fired"


class RunHandle(Protocol):
    """A submitted run, as the service returns it."""

    @property
    def id(self) -> str: ...

    @property
    def done(self) -> asyncio.Event: ...


class Host(Protocol):
    """What the triggers need of the service."""

    def submit(
        self, workflow: str, input: Mapping[str, Any] | None = None, *, source: str = ...
    ) -> RunHandle: ...

    def subscribe(self, subscriber: Callable[[Event], None]) -> Callable[[], None]: ...

    def trigger_fired(self, lag: float) -> None: ...


@dataclass
class LoadedRule:
    """A rule as the service holds it, with what it did."""

    rule: TriggerRule
    version: int
    applied_at: datetime
    schedule: CronSchedule | None = None
    next_slot: datetime | None = None
    last_fire: datetime | None = None
    last_run: RunHandle | None = None
    queued: asyncio.Task[RunHandle | None] | None = None

    @property
    def name(self) -> str:
        return self.rule.name

    def busy(self) -> bool:
        """Its previous run (or a run waiting for it) is still going."""
        if self.queued is not None and not self.queued.done():
            return True
        return self.last_run is not None and not self.last_run.done.is_set()


def _aware(value: str) -> datetime:
    when = datetime.fromisoformat(value)
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


class Triggers:
    """Runs the applied trigger rules for ``host`` (a :class:`~flowstage.service.Service`).

    :param clock: the time schedules read and sleep on (default: the wall clock)
    :param refresh_every: seconds between checks that the stored rules changed
    """

    def __init__(self, host: Host, clock: Clock | None = None, refresh_every: float = 10.0):
        self.host = host
        self.clock: Clock = clock or WallClock()
        self.refresh_every = refresh_every
        self.rules: dict[str, LoadedRule] = {}
        self.index: RuleIndex[LoadedRule] = RuleIndex()
        self._generation: str | None = None
        self._loop: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # life ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the rules, catch up missed slots, start the timers and the event hook."""
        await self.refresh()
        self._unsubscribe = self.host.subscribe(self.on_event)
        if self.refresh_every > 0:
            self._watch = asyncio.create_task(self._watch_store(), name="flowstage-triggers-watch")

    async def stop(self) -> None:
        """Fire nothing more (runs already submitted go on)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        tasks = [t for t in (self._loop, self._watch, *self._tasks) if t is not None]
        tasks += [r.queued for r in self.rules.values() if r.queued is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._loop = self._watch = None

    async def refresh(self) -> None:
        """Read the rules again; new and changed schedules catch up, then are timed."""
        rows, generation = await asyncio.to_thread(_read_rules)
        self._generation = generation
        loaded: dict[str, LoadedRule] = {}
        for row in rows:
            old = self.rules.get(row["name"])
            if old is not None and old.version == row["version"]:
                loaded[row["name"]] = old
                continue
            try:
                rule = TriggerRule.model_validate(row["document"])
                entry = LoadedRule(rule, row["version"], _aware(row["updated_at"]))
                if rule.spec.type == "schedule" and isinstance(rule.spec.rule, list):
                    entry.schedule = parse_schedule(rule.spec.rule, rule.spec.timezone)
            except ValueError as exc:
                log.error("trigger rule %s is not usable: %s", row["name"], exc)
                continue
            if old is not None:
                entry.last_run, entry.last_fire = old.last_run, old.last_fire
            loaded[row["name"]] = entry
        self.rules = loaded
        self.index = RuleIndex(
            (r.rule.spec.rule, r)
            for r in loaded.values()
            if r.rule.spec.type == "condition" and r.rule.spec.enabled
        )
        if self._loop is not None:
            self._loop.cancel()
        await self._catch_up([r for r in loaded.values() if r.schedule and r.next_slot is None])
        self._loop = asyncio.create_task(self._schedules(), name="flowstage-triggers")

    async def _watch_store(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_every)
            try:
                generation = await asyncio.to_thread(_generation)
                if generation != self._generation:
                    await self.refresh()
            except Exception as exc:  # noqa: BLE001 - a store hiccup must not end the watch
                log.error("could not check the trigger rules: %s", exc)

    # conditions ---------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        """Fire the condition rules ``event`` satisfies (called by the service's bus)."""
        if not self.index.size:
            return
        for entry in self.index.matches(event.to_dict()):
            self._act(entry, event)

    # schedules ----------------------------------------------------------------------

    async def _catch_up(self, entries: list[LoadedRule]) -> None:
        now = self.clock.now()
        for entry in entries:
            spec = entry.rule.spec
            assert entry.schedule is not None
            entry.next_slot = entry.schedule.next_after(now)
            last = await asyncio.to_thread(fires.last_slot, get_store(), entry.name)
            entry.last_fire = entry.last_fire or last
            if not spec.enabled or spec.catch_up == "none":
                continue
            since = max(last, entry.applied_at) if last is not None else entry.applied_at
            limit = spec.catch_up_limit if spec.catch_up == "all" else 1
            for slot in entry.schedule.latest(since, now, limit):
                await self._fire(entry, slot, "caught_up")

    async def _schedules(self) -> None:
        while True:
            timed = [r for r in self.rules.values() if r.next_slot and r.rule.spec.enabled]
            if not timed:
                return  # nothing to time: a refresh starts the loop again
            due = min(r.next_slot for r in timed if r.next_slot is not None)
            await self.clock.sleep_until(due)
            now = self.clock.now()
            firing = []
            for entry in timed:
                if entry.next_slot is not None and entry.next_slot <= now:
                    assert entry.schedule is not None
                    firing.append(self._fire(entry, entry.next_slot, "fired"))
                    entry.next_slot = entry.schedule.next_after(now)
            await asyncio.gather(*firing)

    async def _fire(self, entry: LoadedRule, slot: datetime, outcome: str) -> None:
        overlap = entry.rule.spec.overlap
        if outcome == "caught_up" and overlap == "skip":
            overlap = "queue"  # missed slots asked for by catch_up run one after another
        busy = entry.busy() and overlap != "allow"
        claim = "skipped" if busy and overlap == "skip" else "queued" if busy else outcome
        store = get_store()
        try:
            if not await asyncio.to_thread(fires.claim_slot, store, entry.name, slot, claim):
                return  # fired before (by this service before a restart, or another one)
        except Exception as exc:  # noqa: BLE001 - a store error skips one slot, not the timer
            log.error("trigger %s: could not record slot %s: %s", entry.name, slot, exc)
            return
        entry.last_fire = slot
        if claim == "skipped":
            log.info("trigger %s: slot %s skipped, its previous run still goes", entry.name, slot)
            return
        data = {"rule": entry.name, "slot": slot.isoformat(), "caught_up": outcome == "caught_up"}
        event = Event(SCHEDULE_FIRED, data, "flowstage")
        if claim == "queued":
            entry.queued = self._spawn(self._after(entry, entry.queued, entry.last_run, event))
            return
        handle = self._act(entry, event)
        if outcome == "fired":  # caught-up slots are late by design: not counted as lag
            self.host.trigger_fired((self.clock.now() - slot).total_seconds())
        run_id = handle.id if handle is not None else None
        await asyncio.to_thread(fires.set_outcome, store, entry.name, slot, outcome, run_id)

    async def _after(
        self,
        entry: LoadedRule,
        before: asyncio.Task[RunHandle | None] | None,
        running: RunHandle | None,
        event: Event,
    ) -> RunHandle | None:
        if before is not None:
            running = await before
        if running is not None:
            await running.done.wait()
        handle = self._act(entry, event)
        slot = datetime.fromisoformat(event.data["slot"])
        run_id = handle.id if handle is not None else None
        outcome = "caught_up" if event.data.get("caught_up") else "fired"
        await asyncio.to_thread(fires.set_outcome, get_store(), entry.name, slot, outcome, run_id)
        return handle

    # actions ------------------------------------------------------------------------

    def _act(self, entry: LoadedRule, event: Event) -> RunHandle | None:
        """Do the rule's action; the run it submitted, if any. Errors are logged."""
        action = entry.rule.spec.action
        try:
            if action.target == "run_workflow":
                parameters = action.parameters
                handle = self.host.submit(
                    str(parameters["workflow"]), parameters.get("input") or {}, source="trigger"
                )
                entry.last_run = handle
                return handle
            outcome = resolve_target(action.target)(event)
            if inspect.isawaitable(outcome):
                self._spawn(outcome)
        except Exception as exc:  # noqa: BLE001 - a failing action must not stop the others
            log.error("trigger %s: action %s failed: %s", entry.name, action.target, exc)
        return None

    def _spawn(self, awaitable: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(awaitable)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # reading ------------------------------------------------------------------------

    def status(self) -> dict[str, dict[str, Any]]:
        """Each rule's last and next fire, as the service knows them."""
        return {
            name: {
                "enabled": r.rule.spec.enabled,
                "last_fire": r.last_fire.isoformat() if r.last_fire else None,
                "next_fire": r.next_slot.isoformat()
                if r.next_slot and r.rule.spec.enabled
                else None,
            }
            for name, r in self.rules.items()
        }


def _generation() -> str | None:
    store = get_store()
    if not store.path.exists():
        return None
    rows = store.query("SELECT value FROM meta WHERE key = 'resources'")
    return str(rows[0][0]) if rows else None


def _read_rules() -> tuple[list[dict[str, Any]], str | None]:
    generation = _generation()
    return get_store().list_resources("trigger_rule"), generation
