"""Stages of the cache tests: each call leaves a marker file, so a test counts calls
on every executor (worker processes included)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path
from typing import Any

from flowstage import get_run_context


def _mark(marks: str, name: str) -> None:
    (Path(marks) / f"{name}.{uuid.uuid4().hex}").touch()


def calls(marks: str | Path, name: str) -> int:
    """How many times ``name`` was called."""
    return len(list(Path(marks).glob(f"{name}.*")))


def numbers(marks: str, n: int) -> list[dict[str, Any]]:
    _mark(marks, "numbers")
    return [{"i": i, "marks": marks} for i in range(n)]


def square(item: dict[str, Any]) -> int:
    _mark(item["marks"], f"square{item['i']}")
    return int(item["i"]) ** 2


def total(values: list[int]) -> int:
    return sum(values)


def scaled(marks: str, n: int) -> int:
    """Reads the run config: its cache key must change with it."""
    _mark(marks, "scaled")
    return n * int(get_run_context().config.get("factor", 1))


def make_lock(marks: str) -> Any:
    return threading.Lock()


def use_lock(lock: Any) -> str:
    return type(lock).__name__


def make_unpicklable_result(marks: str) -> Any:
    _mark(marks, "unpicklable")
    return threading.Lock()


def describe(value: Any) -> str:
    return type(value).__name__


class Probe:
    """Leaves a marker when pickled or unpickled: ``probe-loop-*`` on an event loop's
    thread, ``probe-thread-*`` elsewhere."""

    def __init__(self, marks: str) -> None:
        self.marks = marks

    def __reduce__(self) -> tuple[Any, ...]:
        _mark(self.marks, f"probe-{_where()}-pickle")
        return (_unpickled_probe, (self.marks,))


def _unpickled_probe(marks: str) -> Probe:
    _mark(marks, f"probe-{_where()}-unpickle")
    return Probe(marks)


def _where() -> str:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return "thread"
    return "loop"


def big_with_probe(marks: str) -> dict[str, Any]:
    """A 1 MB result holding a :class:`Probe`."""
    _mark(marks, "big")
    return {"blob": b"x" * (1 << 20), "probe": Probe(marks)}


def blob_size(value: dict[str, Any]) -> int:
    _mark(value["probe"].marks, "size")
    return len(value["blob"])
