"""Is a run's process still alive? Answers from ``/proc``: a pid alone is not enough,
since pids are reused, so a process is also known by its start time."""

from __future__ import annotations

import os
import socket

from flowstage.storage.processes import proc_stat

_host: str | None = None
_self_start: tuple[int, str | None] | None = None


def this_host() -> str:
    global _host
    if _host is None:
        _host = socket.gethostname()
    return _host


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from ``/proc``), or None."""
    info = proc_stat(pid)
    return info[1] if info else None


def own_start() -> str | None:
    """When this process started (cached per pid)."""
    global _self_start
    pid = os.getpid()
    if _self_start is None or _self_start[0] != pid:
        _self_start = (pid, process_start(pid))
    return _self_start[1]


def process_alive(pid: int, started: str | None) -> bool:
    """Whether ``pid`` on this host is still the process that started at ``started``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    info = proc_stat(pid)
    if info is None:
        return True
    state, start = info
    if state in ("Z", "X"):  # exited, waiting for its parent to collect it
        return False
    return not started or start == started


def process_is(pid: int, started: str | None) -> bool:
    """Whether ``pid`` on this host is, for certain, the live process that started at
    ``started``: the one test to pass before signalling it. An unknown start time (an
    old row, no ``/proc``) is never certain, since the pid may belong to another program.
    """
    if not started:
        return False
    info = proc_stat(pid)
    return info is not None and info[0] not in ("Z", "X") and info[1] == started
