"""Stages for the fault suite: each leaves a file named after its process id, so a test
can find the worker running it and kill it."""

from __future__ import annotations

import os
import time
from pathlib import Path


def nap_item(item: int, marker_dir: str, seconds: float = 1.0) -> int:
    """Write ``marker_dir/<pid>-<item>``, sleep ``seconds``, return ``item * 2``."""
    folder = Path(marker_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{os.getpid()}-{item}").write_text("running")
    time.sleep(seconds)
    return item * 2


def nap(marker_dir: str, seconds: float = 300.0) -> str:
    """Write ``marker_dir/<pid>`` and sleep ``seconds``."""
    folder = Path(marker_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(os.getpid())).write_text("running")
    time.sleep(seconds)
    return "done"
