"""Stages the dashboard's browser tests (and its screenshot script) run, importable as
``teststages.ui``."""

from __future__ import annotations

import time

from flowstage import object_store

#: the text a stage returns to check that the dashboard shows it instead of running it
SCRIPT = "<script>alert(1)</script>"


def split_name(name: str, times: int = 1, seconds: float = 0.0) -> list[str]:
    """``name`` ``times`` times, after ``seconds`` of sleep (a run a page can watch)."""
    time.sleep(float(seconds))
    return [f"{name}-{i}" for i in range(times)]


def greet(part: str) -> str:
    """One map item: a greeting."""
    return f"hello {part}"


def cities() -> list[str]:
    return ["oslo", "lima", "riga", "bergen"]


def visit(city: str) -> str:
    """A map item that fails for ``riga`` (item 2 of :func:`cities`)."""
    if city == "riga":
        raise ValueError(f"{city} is unreachable")
    return city.upper()


def nap(seconds: float = 60.0) -> float:
    """Sleeps ``seconds`` in short steps, so a run can be cancelled while it runs."""
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return float(seconds)


def shout(note: str = "") -> str:
    """Returns markup; prints ``note`` (markup too) to the run's log."""
    print(note)
    return SCRIPT


def keep(key: str = "ui_report", text: str = "a small report") -> str:
    """Stores ``text`` as an artifact under ``key`` (a row on the objects page)."""
    object_store.put(key, text, strategy="artifact")
    return key


def tick(n: int = 0) -> int:
    """A run that costs nothing, for filling pages of runs."""
    return n
