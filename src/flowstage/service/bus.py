"""In-process event publication: subscribers of the service and the plugins' hook."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowstage.core.events import Event
    from flowstage.core.plugin_manager import FlowstagePlugins

log = logging.getLogger("flowstage.service")

#: a subscriber: a function of the event, plain or ``async``
Subscriber = Callable[["Event"], "Awaitable[None] | None"]


class EventBus:
    """Hands each published event to every subscriber, then to the plugins' hook
    ``flowstage_event_published``. A subscriber that raises is logged and skipped; an
    ``async`` subscriber runs as a task of its own, so a slow one delays nobody."""

    def __init__(self, plugins: FlowstagePlugins | None = None) -> None:
        self._plugins = plugins
        self._subscribers: list[Subscriber] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber(event)`` for every event from now on; returns a function
        that unsubscribes it."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    def publish(self, event: Event) -> None:
        """Deliver ``event`` now (async subscribers: as tasks of the running loop)."""
        for subscriber in list(self._subscribers):
            try:
                outcome = subscriber(event)
                if inspect.isawaitable(outcome):
                    task = asyncio.ensure_future(outcome)
                    self._tasks.add(task)
                    task.add_done_callback(self._done)
            except Exception as exc:  # noqa: BLE001 - one subscriber's bug must not stop the others
                log.error("event subscriber %r raised on %s: %s", subscriber, event.type, exc)
        if self._plugins is not None:
            self._plugins.notify("flowstage_event_published", event=event)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("event subscriber task raised: %s", task.exception())
