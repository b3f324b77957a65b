"""The service applies ``store.run_retention``: at start, then once an hour."""

from __future__ import annotations

import asyncio
import logging

from flowstage.state.retention import prune_runs
from flowstage.state.store import get_store

log = logging.getLogger("flowstage.service")

#: how often the history is pruned while the service runs
PRUNE_SECONDS = 3600.0


def prune_once() -> int:
    """Delete the ended runs older than ``store.run_retention`` (unset: none); how many."""
    store = get_store()
    age = store.settings.run_retention
    if age is None:
        return 0
    deleted = prune_runs(store, older_than=age)
    if deleted:
        log.info("pruned %d run(s) older than store.run_retention", len(deleted))
    return len(deleted)


async def prune_forever(interval: float = PRUNE_SECONDS) -> None:
    """:func:`prune_once` now and every ``interval`` seconds, until cancelled; a failure
    is logged and tried again at the next interval (pruning never stops the service)."""
    while True:
        try:
            await asyncio.to_thread(prune_once)
        except Exception as exc:  # noqa: BLE001 - a full disk or a locked store: next time
            log.warning("could not prune the run history: %s: %s", type(exc).__name__, exc)
        await asyncio.sleep(interval)
