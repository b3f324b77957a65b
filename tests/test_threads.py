"""``SharedThreads``: the engine calls' and the cache's thread pools, made on first use,
shared by runs, made anew in a forked child, carrying the caller's context variables."""

from __future__ import annotations

import asyncio
import contextvars
import os
import signal
import threading
import time

import pytest

from flowstage.core.threads import SharedThreads

_who: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")


def test_run_carries_the_callers_context_variables_into_a_named_thread():
    threads = SharedThreads(2, "flowstage-test")

    async def main() -> tuple[str, str]:
        _who.set("the run")
        return await threads.run(lambda: (_who.get(), threading.current_thread().name))

    who, name = asyncio.run(main())
    assert who == "the run"
    assert name.startswith("flowstage-test")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_starts_threads_of_its_own():
    threads = SharedThreads(1, "flowstage-test")
    parent_thread = threads.submit(threading.get_ident).result()  # the parent's pool exists
    pid = os.fork()
    if pid == 0:  # the child: the parent's thread is not here, a new one must start
        code = 1
        try:
            child_thread = threads.submit(threading.get_ident).result(timeout=20)
            code = 0 if child_thread != threading.get_ident() else 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + 30
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the forked child's thread pool did not answer")
        time.sleep(0.05)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert threads.submit(threading.get_ident).result() == parent_thread
