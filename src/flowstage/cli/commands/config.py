"""``flowstage config show``: the effective settings and where each comes from."""

from __future__ import annotations

import json
import os
from typing import Any

import typer

from flowstage.cli.commands.common import check_format
from flowstage.cli.output import LIST_FORMATS, print_rows
from flowstage.core.settings import (
    ENV_PREFIX,
    env_overrides,
    load_settings,
    read_settings_file,
    settings_path,
)


def config_show(fmt: str = typer.Option("table", "--format", help="table, json or yaml.")) -> None:
    """The effective settings, and where each value comes from (default, settings file,
    environment)."""
    check_format(fmt, LIST_FORMATS)
    rows = settings_sources()
    if fmt == "table":
        rows = [
            {
                **r,
                "value": json.dumps(r["value"]) if not isinstance(r["value"], str) else r["value"],
            }
            for r in rows
        ]
    print_rows(rows, fmt)


def settings_sources() -> list[dict[str, Any]]:
    """``{key, value, source}`` for every setting, dotted keys, sorted."""

    effective = _flatten(load_settings().model_dump(mode="json"))
    path = settings_path()
    from_file: dict[str, Any] = {}
    if path.exists():
        from_file = _flatten(read_settings_file(path))
    from_env = _flatten(env_overrides(os.environ))
    rows = []
    for key, value in sorted(effective.items()):
        if key in from_env:
            source = f"environment {ENV_PREFIX}{key.upper().replace('.', '__')}"
        elif key in from_file:
            source = f"settings file {path}"
        else:
            source = "default"
        rows.append({"key": key, "value": value, "source": source})
    return rows


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(data, dict) and (data or not prefix):
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
    else:
        out[prefix.rstrip(".")] = data
    return out


def register(app: typer.Typer) -> None:
    """Add the ``config`` command group (``config show``) to ``app``."""
    config_app = typer.Typer(
        help="Settings: `config show` prints the effective ones and their sources.",
        no_args_is_help=True,
    )
    config_app.command("show")(config_show)
    app.add_typer(config_app, name="config")
