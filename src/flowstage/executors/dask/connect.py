"""Reaching a Dask scheduler: waiting until it answers at an address."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

log = logging.getLogger("flowstage.executors.dask.connect")


def probe_scheduler(address: str, timeout: float) -> None:
    """Ask the scheduler at ``address`` who it is, giving up after ``timeout`` seconds.

    ``distributed.Client(address, timeout=...)`` waits forever on a listener that never
    answers the handshake; this check has a hard deadline. It runs in a thread of its
    own so that it works whether or not the caller is inside an event loop.
    """
    # lazy: Dask is an optional extra, imported only when it runs
    from distributed.comm.core import connect

    async def identity() -> Any:
        comm = await connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            await comm.close()

    outcome: dict[str, Any] = {}

    def probe() -> None:
        try:
            outcome["identity"] = asyncio.run(asyncio.wait_for(identity(), timeout))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread, which decides
            outcome["error"] = exc

    thread = threading.Thread(target=probe, daemon=True, name="flowstage-dask-probe")
    thread.start()
    thread.join(timeout + 5)
    if "identity" in outcome:
        return
    error = outcome.get("error")
    if isinstance(error, Exception) and not isinstance(error, (TimeoutError, asyncio.TimeoutError)):
        raise error
    raise TimeoutError("")
