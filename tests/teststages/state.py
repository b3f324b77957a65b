"""Stage functions for the store, CLI-resource and background-run tests
(importable as ``teststages.state``)."""

from __future__ import annotations

import logging
import threading
import time

from flowstage import get_run_context

log = logging.getLogger("teststages.state")


def config_dict() -> dict:
    """The run's merged config data."""
    return get_run_context().config.to_dict()


def config_key(key: str) -> object:
    """One key of the run config, read with item access."""
    return get_run_context().config[key]


def run_source() -> str:
    return get_run_context().run.source


def chatty(word: str = "hello") -> str:
    """Prints and logs, for ``runs logs``."""
    print(f"printed {word}", flush=True)
    log.warning("logged %s", word)
    return word


def sleepy(seconds: float) -> float:
    print(f"sleeping {seconds}s", flush=True)
    time.sleep(seconds)
    return seconds


def pair() -> tuple:
    """JSON would turn the tuple into a list: kept as a pickle."""
    return (1, "two")


def numbers_up_to(n: int) -> list:
    return list(range(n))


def lock() -> object:
    """Not picklable: the run keeps no result, and says why."""
    return threading.Lock()


def fails() -> None:
    raise ValueError("state stage fails on purpose")


def count_items(loop: list) -> int:
    """Takes an input that may refer to itself (a YAML alias of its own list)."""
    return len(loop)
