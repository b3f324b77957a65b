"""The log files of background runs: where each one lives, and reading its end.

A run's log is always ``<app dir>/logs/<run id>.log``. The ``log_path`` a run row holds
says only that the run has a log: readers open the file this module names, and only
when it resolves (symlinks followed) to a file inside the logs directory, so a row
written by anyone who can write the store never makes them read a file elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from flowstage.core.settings import app_dir


def logs_dir() -> Path:
    """The directory of the background runs' logs."""
    return app_dir() / "logs"


def log_path(run_id: str) -> Path:
    """Where background run ``run_id`` writes its log."""
    return logs_dir() / f"{run_id}.log"


def run_log(run_id: str) -> Path | None:
    """The log file of run ``run_id`` resolved, or None when it would lie outside the
    logs directory (a symlink out, an id holding a path)."""
    root = logs_dir().resolve()
    path = log_path(run_id).resolve()
    return path if path.parent == root else None


def read_tail(run_id: str, limit: int) -> tuple[bytes, int] | None:
    """The last ``limit`` bytes of run ``run_id``'s log and the log's whole size.

    :returns: None when the run has no readable log inside the logs directory
    """
    path = run_log(run_id)
    if path is None:
        return None
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - limit))
            return fh.read(), size
    except OSError:
        return None


def last_line(run_id: str, limit: int = 300) -> str | None:
    """The last non-blank line of run ``run_id``'s log, cut at ``limit`` characters
    (None: no log, or nothing in it)."""
    found = read_tail(run_id, 2048)
    if found is None:
        return None
    lines = [ln for ln in found[0].decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1].strip()[:limit] if lines else None
