"""Stages of the resume tests: each call leaves a marker file, so a test counts calls."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any


def _mark(marks: str, name: str) -> None:
    (Path(marks) / f"{name}.{uuid.uuid4().hex}").touch()


def calls(marks: str | Path, name: str) -> int:
    """How many times the stage ``name`` was called."""
    return len(list(Path(marks).glob(f"{name}.*")))


def first(marks: str, flag: str) -> dict[str, Any]:
    _mark(marks, "first")
    return {"marks": marks, "flag": flag, "value": 1}


def second(state: dict[str, Any]) -> dict[str, Any]:
    _mark(state["marks"], "second")
    return {**state, "value": state["value"] + 1}


def third(state: dict[str, Any]) -> int:
    _mark(state["marks"], "third")
    if os.path.exists(state["flag"]):
        raise RuntimeError(f"flag file {state['flag']} is there")
    return int(state["value"]) * 10


def items(marks: str, flag: str, n: int) -> list[dict[str, Any]]:
    _mark(marks, "items")
    return [{"i": i, "marks": marks, "flag": flag} for i in range(n)]


def square(item: dict[str, Any]) -> int:
    _mark(item["marks"], f"item{item['i']}")
    if item["i"] in (3, 7) and os.path.exists(item["flag"]):
        raise ValueError(f"item {item['i']} fails while the flag is there")
    return int(item["i"]) ** 2


def squares(values: list[int]) -> list[int]:
    return list(values)
