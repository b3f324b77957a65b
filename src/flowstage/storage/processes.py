"""What ``/proc`` says about a process: its state and when it started. A pid alone
does not name a process for long, since pids are reused; with its start time it does.
Used by the cluster memory here and by the run history's liveness checks above."""

from __future__ import annotations


def proc_stat(pid: int) -> tuple[str, str] | None:
    """``(state letter, start time)`` of process ``pid``, the start time in clock ticks
    since boot; None when it is gone or there is no ``/proc``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = text[text.rfind(")") + 2 :].split()
    return (fields[0], fields[19]) if len(fields) > 19 else None


def running_since(pid: int) -> str | None:
    """When process ``pid`` started; None when it is gone, a zombie, or unknown."""
    info = proc_stat(pid)
    return info[1] if info is not None and info[0] not in ("Z", "X") else None
