"""Parsing of durations (``500ms``, ``2m``) and memory sizes (``8GB``, ``512MiB``)."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?\s*$")
_DURATION_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgtp]?i?b?)\s*$", re.IGNORECASE)
_MEMORY_PREFIX = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


def parse_duration(value: object) -> float:
    """Seconds from ``500ms``, ``0.5s``, ``2m``, ``1h``, ``1d`` or a number of seconds.

    :raises ValueError: the value is not a non-negative duration
    """
    if isinstance(value, bool):
        raise ValueError(
            f"expected a duration such as 500ms, 2s, 1m or a number of seconds, got {value!r}"
        )
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            msg = f"expected a duration such as 500ms, 2s, 1m or a number of seconds, got {value!r}"
            raise ValueError(msg)
        seconds = float(match.group(1)) * _DURATION_SECONDS[match.group(2)]
    if seconds < 0:
        raise ValueError(f"expected a non-negative duration, got {value!r}")
    return seconds


def parse_memory(value: object) -> int:
    """Bytes from ``8GB`` (decimal), ``512MiB`` (binary), ``100k`` or a number of bytes.

    :raises ValueError: the value is not a non-negative size
    """
    if isinstance(value, bool):
        raise ValueError(
            f"expected a memory size such as 8GB, 512MiB or a number of bytes, got {value!r}"
        )
    if isinstance(value, (int, float)):
        size = float(value)
    else:
        match = _MEMORY.match(str(value))
        if not match:
            msg = f"expected a memory size such as 8GB, 512MiB or a number of bytes, got {value!r}"
            raise ValueError(msg)
        unit = match.group(2).lower()
        base = 1024 if "i" in unit else 1000
        size = float(match.group(1)) * base ** _MEMORY_PREFIX[unit[:1] if unit[:1] != "b" else ""]
    if size < 0:
        raise ValueError(f"expected a non-negative memory size, got {value!r}")
    return int(size)
