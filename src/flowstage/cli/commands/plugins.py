"""``flowstage plugins`` and ``flowstage executors``: what is installed."""

from __future__ import annotations

import importlib.util
from typing import Any

import typer

from flowstage.cli.commands import scaffold
from flowstage.cli.commands.common import check_format
from flowstage.cli.output import print_value
from flowstage.core.plugin_manager import default_plugins


def plugins_list(
    ctx: typer.Context,
    fmt: str = typer.Option("table", "--format", help="table, json or yaml."),
) -> None:
    """List installed plugins: name, distribution, version, hooks and status."""
    if ctx.invoked_subcommand is not None:
        return

    check_format(fmt, ("table", "json", "yaml"))
    debug = bool(ctx.find_root().params.get("debug"))
    rows = []
    for info in default_plugins().infos:
        row = info.as_dict()
        row["hooks"] = (
            ", ".join(h.removeprefix("flowstage_") for h in info.hooks)
            if fmt == "table"
            else info.hooks
        )
        if fmt == "table":
            del row["value"]
            row["error"] = row["error"] or ""
        rows.append(row)
        if debug and info.traceback:
            typer.echo(info.traceback, err=True)
    print_value(rows, fmt)


def executors(fmt: str = typer.Option("table", "--format", help="table, json or yaml.")) -> None:
    """List executors, whether their extra is installed, and their options."""

    check_format(fmt, ("table", "json", "yaml"))
    registry = default_plugins().registries.executors
    rows = [executor_row(name, cls, registry.owner_of(name), fmt) for name, cls in registry.items()]
    print_value(rows, fmt)


def executor_row(name: str, cls: Any, owner: str, fmt: str) -> dict[str, Any]:
    requires = getattr(cls, "requires", ())
    missing = [m for m in requires if importlib.util.find_spec(m) is None]
    options = {field: _default(info) for field, info in cls.Options.model_fields.items()}
    extra = getattr(cls, "extra", None)
    row: dict[str, Any] = {
        "name": name,
        "installed": "yes"
        if not missing
        else f"no (pip install 'flowstage[{extra}]')"
        if extra
        else "no",
        "options": ", ".join(f"{k}={v}" for k, v in options.items()) if fmt == "table" else options,
        "plugin": owner,
    }
    return row


def _default(info: Any) -> Any:
    if info.default_factory is not None:
        return info.default_factory()
    return None if info.is_required() else info.default


def register(app: typer.Typer) -> None:
    """Add ``plugins`` (the list, and ``plugins new``) and ``executors`` to ``app``."""
    plugins_app = typer.Typer(
        help="Installed plugins; `plugins new NAME` scaffolds one.", invoke_without_command=True
    )
    plugins_app.callback(invoke_without_command=True)(plugins_list)

    plugins_app.command("new")(scaffold.new)
    app.add_typer(plugins_app, name="plugins")
    app.command()(executors)
