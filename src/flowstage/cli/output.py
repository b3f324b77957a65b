"""Printing results and records as JSON, YAML, a table or raw text."""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime
from typing import Any

from flowstage.state.rows import parse_time

FORMATS = ("json", "yaml", "table", "raw")
#: the formats of a listing (``get``, ``runs``, ``config show``)
LIST_FORMATS = ("table", "json", "yaml")


def _plain(value: Any) -> Any:
    """``value`` with everything JSON cannot hold turned into its repr."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return repr(value)


def _finite(value: Any) -> Any:
    """``value`` (already plain) with NaN and infinities as ``None``: JSON has no such
    numbers, and ``json.dumps`` would print ``NaN``, which JSON parsers refuse."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def to_json(value: Any) -> str:
    return json.dumps(_finite(_plain(value)), indent=2, allow_nan=False)


def to_yaml(value: Any) -> str:
    # lazy: PyYAML is slow to import; only YAML output needs it
    import yaml

    return yaml.safe_dump(_plain(value), sort_keys=False, default_flow_style=False).rstrip("\n")


def render(value: Any, fmt: str) -> Any:
    """Something ``rich`` or ``print`` can show for ``value`` in format ``fmt``."""
    if fmt == "json":
        return to_json(value)
    if fmt == "yaml":
        return to_yaml(value)
    if fmt == "table":
        return to_table(value)
    return value if isinstance(value, str) else repr(value)


def to_table(value: Any) -> Any:
    # lazy: rich is slow to import; only printed output needs it
    from rich.table import Table

    table = Table(show_header=True)
    rows = value if isinstance(value, list) else None
    if rows and all(isinstance(r, dict) for r in rows):
        columns = list(dict.fromkeys(k for r in rows for k in r))
        for column in columns:
            table.add_column(str(column))
        for row in rows:
            table.add_row(*(_cell(row.get(c)) for c in columns))
    elif isinstance(value, dict):
        table.add_column("key")
        table.add_column("value")
        for key, item in value.items():
            table.add_row(str(key), _cell(item))
    elif isinstance(value, (list, tuple)):
        table.add_column("#")
        table.add_column("value")
        for index, item in enumerate(value):
            table.add_row(str(index), _cell(item))
    else:
        table.add_column("result")
        table.add_row(_cell(value))
    return table


def _cell(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return json.dumps(_plain(value)) if isinstance(value, (dict, list, tuple)) else str(value)


def print_value(value: Any, fmt: str) -> None:
    rendered = render(value, fmt)
    if isinstance(rendered, str):
        print(rendered, flush=True)
    else:
        # lazy: rich is slow to import; only printed output needs it
        from rich.console import Console

        Console().print(rendered)


def print_rows(rows: list[dict[str, Any]], fmt: str) -> None:
    """Rows as aligned columns under an upper-case header (as kubectl lists), or JSON/YAML."""
    if fmt != "table":
        print_value(rows, fmt)
        return
    if not rows:
        return
    columns = list(rows[0])
    cells = [[c.upper() for c in columns]] + [
        ["" if r.get(c) is None else str(r.get(c)) for c in columns] for r in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    out = [
        "   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    ]
    sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()


def local_time(value: str | None) -> str:
    """A stored UTC time in the local time zone, to the second."""
    moment = parse_time(value)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else ""
