"""Dask futures seen from the driver's event loop: waiting for one without blocking
the loop, fetching its value through the client's own loop, telling how it ended, and
cancelling futures (restarting the workers of our own cluster still running one).

Nothing here imports dask or distributed: a future comes from the executor, and the
``Future`` type is looked up only once distributed is loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from flowstage.executors.common import main_module_hidden
from flowstage.executors.dask.worker import executing

# the executor's logger: what it logs keeps the name it had there
log = logging.getLogger("flowstage.executors.dask.executor")

#: a task still running this long after it was cancelled gets its worker restarted
CANCEL_GRACE_SECONDS = 0.5


def _settle(waiter: asyncio.Future[Any], outcome: Any) -> None:
    if not waiter.done():
        waiter.set_result(outcome)


def outcome(future: Any) -> BaseException | None:
    """How ``future`` ended: None when it finished, else its exception (or why it has
    no result: the worker was lost or the scheduler released it)."""
    status = future.status
    if status == "finished":
        return None
    if status == "error":
        try:
            error: BaseException | None = future.exception()
            return error
        except BaseException as exc:  # noqa: BLE001 - the task's own exception, reported as the stage's failure
            return exc
    return RuntimeError(f"the Dask task was {status} (worker lost or the scheduler released it)")


async def wait_done(future: Any) -> BaseException | None:
    """Wait for ``future`` without blocking the event loop; its :func:`outcome`."""
    if future.done():
        return outcome(future)
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[BaseException | None] = loop.create_future()

    def done(f: Any) -> None:  # runs in Dask's callback thread
        ended = outcome(f)
        with contextlib.suppress(RuntimeError):  # the run's loop is already closed
            loop.call_soon_threadsafe(_settle, waiter, ended)

    future.add_done_callback(done)
    return await waiter


async def gather(client: Any, future: Any) -> Any:
    """``future``'s value, fetched by ``client``'s own event loop (no thread blocks).

    :raises BaseException: whatever fetching it raised
    """
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[Any] = loop.create_future()

    async def fetch() -> None:  # runs on the Dask client's event loop
        try:
            fetched: tuple[bool, Any] = (
                True,
                (await client.gather([future], asynchronous=True))[0],
            )
        except BaseException as exc:  # noqa: BLE001 - handed to the driver's loop, which raises it there
            fetched = (False, exc)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, waiter, fetched)

    client.loop.add_callback(fetch)
    ok, value = await waiter
    if not ok:
        raise value
    return value


def stop(client: Any, futures: list[Any], own_cluster: bool, current: Callable[[], Any]) -> None:
    """Cancel ``futures``; on our own cluster, kill workers still running one.

    A running Dask task cannot be interrupted, and a timed-out stage would keep a
    worker's only thread busy. The nanny starts a fresh worker in its place.

    :param own_cluster: the cluster is the executor's own (its workers may be killed)
    :param current: the executor's client now (another one: the executor was closed)
    """
    keys = [f.key for f in futures]
    try:
        client.cancel(futures, force=True)
        for future in futures:
            release(future)
        if not own_cluster:
            return
        time.sleep(CANCEL_GRACE_SECONDS)
        if current() is not client:
            return
        states = client.run(executing, keys, on_error="ignore")
        busy = [
            (w, state[0])
            for w, state in states.items()
            if isinstance(state, (tuple, list)) and len(state) == 2 and state[1]
        ]
        if not busy:
            return
        log.info(
            "stopping Dask workers still running cancelled tasks: %s",
            ", ".join(w for w, _ in busy),
        )
        expected = len(client.scheduler_info(n_workers=-1)["workers"])
        with main_module_hidden():  # the nannies spawn the replacements now
            for _, pid in busy:
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and current() is client:
                time.sleep(0.1)
                workers = client.scheduler_info(n_workers=-1)["workers"]
                if len(workers) >= expected and not {w for w, _ in busy} & set(workers):
                    break
    except Exception as exc:  # noqa: BLE001 - best effort: cancel never raises
        log.debug("cancelling Dask tasks failed: %s", exc)


def release(future: Any) -> None:
    """Let the client forget a failed or cancelled ``future`` now.

    Dask keeps a task's state while a ``Future`` of it lives, and the client keeps the
    task's exception in that state. Raised, the exception collects our frames in its
    traceback, and they hold the ``Future``: a cycle rooted in the client that garbage
    collection never frees, so every failed or timed-out run left its tasks (and their
    results) on the cluster for good.
    """
    with contextlib.suppress(Exception):  # best effort: the client may be closing
        future.release()


def future_type() -> type | None:
    """``distributed.Future`` once distributed is loaded (None before: no future exists)."""
    module = sys.modules.get("distributed")
    return getattr(module, "Future", None) if module is not None else None


def future_of(value: Any) -> Any | None:
    """``value`` if it is a Dask future, else None."""
    kind = future_type()
    return value if kind is not None and isinstance(value, kind) else None


def label_of(future: Any) -> str:
    """The stage label in ``future``'s key (``<label>-<random hex>``)."""
    key = str(future.key)
    return key.rsplit("-", 1)[0] if "-" in key else key


def traceback_of(exc: BaseException) -> str:
    """``exc``'s traceback as text."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
