"""Stages that record when they ran, for scheduling tests."""

from __future__ import annotations

import threading
import time

from flowstage import get_run_context


def sleep_for(seconds: float = 0.1) -> float:
    time.sleep(seconds)
    return seconds


def slow_root() -> str:
    time.sleep(0.4)
    return "slow"


def fast_root() -> str:
    time.sleep(0.02)
    return "fast"


def after_fast(value: str) -> str:
    return value + "-child"


def window(*_args: object) -> tuple[float, float]:
    start = time.monotonic()
    time.sleep(0.15)
    return start, time.monotonic()


def fail_fast() -> None:
    time.sleep(0.01)
    raise RuntimeError("fail fast")


def never_called(*_args: object) -> None:
    raise AssertionError("this stage should have been cancelled")


def returns_lock() -> object:
    return threading.Lock()


def hang() -> None:
    time.sleep(30)


def stage_name() -> str:
    return get_run_context().stage
