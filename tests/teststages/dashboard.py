"""Stages the dashboard tests run (importable as ``teststages.dashboard``)."""

from __future__ import annotations

import time


def echo(value: object = "hi") -> object:
    return value


def numbers(count: int = 4) -> list[int]:
    return list(range(count))


def odd_fails(x: int) -> int:
    if x % 2:
        raise ValueError(f"<b>item {x} is odd</b>")
    return x


def nap(seconds: float = 30.0) -> float:
    time.sleep(float(seconds))
    return float(seconds)


def typed(count: int, label: str = "x") -> str:
    return label * count


def shout(text: str = "<b>bold</b>") -> str:
    print(f"log line: {text}", flush=True)
    return text
