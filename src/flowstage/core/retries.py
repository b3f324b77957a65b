"""The retry schedule every stage call follows, in the driver and in workers alike."""

from __future__ import annotations

from collections.abc import Iterator


def attempts(retries: int, delay: float) -> Iterator[tuple[int, float | None]]:
    """Attempts ``1 .. retries + 1``, each with the pause to take if it fails.

    The pause doubles from ``delay`` on each attempt; it is ``None`` after the last
    attempt, which tells the caller to give up rather than wait.
    """
    for number in range(1, retries + 2):
        yield number, (delay * 2 ** (number - 1) if number <= retries else None)
