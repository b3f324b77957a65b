"""Stages that outlive their timeout, for tests of what a timeout frees."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

#: set by a test to end the busy calls of this process early
STOP = threading.Event()


def busy(seconds: float = 3.0, marker_dir: str = "") -> str:
    """Keep a worker busy for ``seconds`` (ends early on ``STOP``), leaving a file named
    after its pid and thread in ``marker_dir`` while it runs."""
    marker = None
    if marker_dir:
        marker = Path(marker_dir) / f"{os.getpid()}-{threading.get_ident()}"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("busy")
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not STOP.is_set():
            time.sleep(0.01)
    finally:
        if marker is not None:
            marker.unlink()
    return "done"


def trivial() -> str:
    return "ok"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def stamped_attempt(log: str, seconds: float = 5.0) -> str:
    """Append ``start <pid> <alive pids of earlier attempts>`` to ``log``, sleep, then
    append ``end <pid>``."""
    path = Path(log)
    earlier = path.read_text().split("\n") if path.exists() else []
    pids = [int(line.split()[1]) for line in earlier if line.startswith("start ")]
    alive = [str(pid) for pid in pids if pid != os.getpid() and _alive(pid)]
    with path.open("a") as out:
        out.write(f"start {os.getpid()} {' '.join(alive)}\n")
    time.sleep(seconds)
    with path.open("a") as out:
        out.write(f"end {os.getpid()}\n")
    return "finished"
