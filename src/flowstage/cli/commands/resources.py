"""Resources and history, the way ``kubectl`` manages them: ``apply``, ``get``,
``inspect``, ``delete``, ``runs`` (with ``cancel`` and ``logs``) and ``config show``."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import typer

from flowstage.cli.commands.common import check_format
from flowstage.cli.commands.run import retry
from flowstage.cli.output import print_value
from flowstage.core.errors import UnknownNameError, UserError
from flowstage.core.plugin_manager import default_plugins
from flowstage.core.runs import ACTIVE_STATES
from flowstage.core.settings import (
    ENV_PREFIX,
    env_overrides,
    load_settings,
    read_settings_file,
    settings_path,
)
from flowstage.state.history import RUN_SUMMARY_KEYS
from flowstage.state.rows import describe_run, parse_time
from flowstage.state.store import get_store

LIST_FORMATS = ("table", "json", "yaml")
RUN_KINDS = ("run", "runs")


def _plugins() -> Any:
    return default_plugins()


def _kind(word: str, allowed: tuple[str, ...]) -> str:
    kind = word.lower().removesuffix("s")
    if kind in ("trigger_rule", "schedule") and "trigger" in allowed:
        kind = "trigger"  # Flowdapt's names for what `get triggers` lists
    if kind not in allowed:
        # lazy: keeps `flowstage --help` fast (it imports every command module)
        from flowstage.core.hints import did_you_mean

        raise UserError(
            f"unknown kind {word!r}{did_you_mean(kind, allowed)} "
            f"(expected one of: {', '.join(allowed)})"
        )
    return kind


def _stored_kind(kind: str) -> str:
    """The ``kind:`` a resource has in its file (and in the store)."""
    return "trigger_rule" if kind == "trigger" else kind


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


def _when(value: str | None) -> str:
    """A stored UTC time in the local time zone, to the second."""

    moment = parse_time(value)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else ""


# -- apply / delete ---------------------------------------------------------------------------


def apply(
    path: list[Path] = typer.Option(
        ...,
        "--path",
        "-p",
        help="A YAML file (several documents allowed) or a folder of them; repeatable.",
    ),
    recursive: bool = typer.Option(
        True,
        "--recursive/--no-recursive",
        "-R",
        help="Also read a folder's sub-folders (as flowctl does).",
    ),
    server: str | None = typer.Option(
        None, "--server", help="Act on the service at this URL (default: service.url)."
    ),
) -> None:
    """Create or update the workflows, configs and trigger rules in every PATH: all of
    them, or none if one is invalid."""
    # lazy: keeps `flowstage --help` fast (it imports every command module)
    from flowstage.cli.remote import server_url
    from flowstage.state.resources import apply_path

    url = server_url(server)
    if url is not None:
        _apply_remote(url, path, recursive)
        return

    for kind, name, outcome in apply_path(path, _plugins(), recursive):
        typer.echo(f"{kind}/{name} {outcome}")


def _apply_remote(url: str, paths: list[Path], recursive: bool) -> None:
    # lazy: keeps `flowstage --help` fast (it imports every command module)
    from flowstage.cli.remote import RemoteService
    from flowstage.core.loading import read_documents
    from flowstage.state.resources import resource_files

    service = RemoteService(url)
    for file in (f for path in paths for f in resource_files(path, recursive)):
        documents, _path = read_documents(file)
        for document in documents:
            kind, name = service.apply(document)
            typer.echo(f"{kind}/{name} applied")


def delete(
    kind: str | None = typer.Argument(None, help="workflow, config, trigger or run."),
    name: str | None = typer.Argument(None, help="Name of the resource (a run: its id)."),
    path: Path | None = typer.Option(
        None, "--path", "-p", help="Delete every resource defined in this file or folder."
    ),
    recursive: bool = typer.Option(
        False, "--recursive", "-R", help="With -p: also read sub-folders."
    ),
    server: str | None = typer.Option(
        None, "--server", help="Act on the service at this URL (default: service.url)."
    ),
) -> None:
    """Delete an applied workflow, config or trigger rule (`delete workflow NAME`), those in
    a file (`delete -p PATH`), or an ended run with its files (`delete run ID`).

    The history of a deleted workflow's runs is kept."""
    # lazy: keeps `flowstage --help` fast (it imports every command module)
    from flowstage.state import resources as catalog

    if path is not None:
        if kind is not None:
            raise UserError("give either KIND NAME or -p PATH, not both")
        for res_kind, res_name, found in catalog.delete_path(path, recursive):
            typer.echo(f"{res_kind}/{res_name} {'deleted' if found else 'not found'}")
        return
    if kind is None or name is None:
        raise UserError("expected KIND NAME (e.g. `delete workflow build_features`) or -p PATH")
    resource_kind = _stored_kind(_kind(kind, ("workflow", "config", "trigger", "run")))
    # lazy: keeps `flowstage --help` fast (it imports every command module)
    from flowstage.cli.remote import RemoteService, server_url

    url = server_url(server)
    if url is not None:
        RemoteService(url).delete(resource_kind, name)
    elif resource_kind == "run":
        # lazy: keeps `flowstage --help` fast (it imports every command module)
        from flowstage.state.retention import delete_run

        typer.echo(f"run/{delete_run(get_store(), name)} deleted")
        return
    else:
        catalog.delete_resource(resource_kind, name)
    typer.echo(f"{resource_kind}/{name} deleted")


# -- get / runs ---------------------------------------------------------------------------------


def get(
    kind: str = typer.Argument(..., help="workflows, configs, triggers or runs."),
    name: str | None = typer.Argument(
        None, help="One resource; for runs, a run id or a workflow name."
    ),
    fmt: str = typer.Option("table", "--format", help="table, json or yaml."),
    limit: int = typer.Option(50, "--limit", "-l", help="Runs: how many per page (0: all)."),
    page: int = typer.Option(1, "--page", help="Runs: which page, newest first."),
    state: str | None = typer.Option(None, "--state", help="Runs: only those in this state."),
    server: str | None = typer.Option(
        None, "--server", help="Act on the service at this URL (default: service.url)."
    ),
) -> None:
    """List applied workflows (and those plugins ship), configs, trigger rules, or the run
    history."""
    check_format(fmt, LIST_FORMATS)
    resource_kind = _kind(kind, ("workflow", "config", "trigger", "run"))
    # lazy: keeps `flowstage --help` fast (it imports every command module)
    from flowstage.cli.remote import server_url

    url = server_url(server)
    if url is not None:
        _get_remote(url, resource_kind, name, fmt, limit)
        return
    if resource_kind == "run":
        _list_runs(name, fmt, limit, page, state)
        return
    # lazy: keeps `flowstage --help` fast (it imports every command module)
    from flowstage.state import resources as catalog

    if resource_kind == "trigger":
        rows = catalog.trigger_rows(name)
        if fmt == "table":
            rows = [
                {
                    "name": r["name"],
                    "type": r["type"],
                    "enabled": "yes" if r["enabled"] else "no",
                    "rule": r["rule"],
                    "action": r["action"],
                    "parameters": r["parameters"],
                    "last fire": _when(r["last_fire"]) if r["last_fire"] else "-",
                    "next fire": _when(r["next_fire"]) if r["next_fire"] else "-",
                }
                for r in rows
            ]
    elif resource_kind == "workflow":
        rows = catalog.workflow_rows(_plugins(), name)
        if fmt == "table":
            rows = [
                {
                    "name": r["name"],
                    "source": r["source"],
                    "stages": r["stages"],
                    "annotations": ", ".join(f"{k}={v}" for k, v in r["annotations"].items()),
                    "version": r["version"] or "",
                    "updated": _when(r["updated_at"]),
                }
                for r in rows
            ]
    else:
        rows = catalog.config_rows(name)
        if fmt == "table":
            rows = [
                {
                    "name": r["name"],
                    "selector": r["selector"],
                    "keys": ", ".join(r["data"]),
                    "version": r["version"],
                    "updated": _when(r["updated_at"]),
                }
                for r in rows
            ]
    if fmt == "table" and not rows:
        typer.echo(f"no {resource_kind}s (`flowstage apply -p FILE` adds them)", err=True)
        return
    print_rows(rows, fmt)


def _get_remote(url: str, kind: str, name: str | None, fmt: str, limit: int) -> None:
    # lazy: keeps `flowstage --help` fast (it imports every command module)
    from flowstage.cli.remote import RemoteService

    service = RemoteService(url)
    if kind == "run":
        rows = [
            {
                k: r.get(k)
                for k in ("id", "workflow", "state", "source", "started_at", "finished_at")
            }
            for r in service.runs(name, limit)
        ]
    else:
        rows = [
            {
                "name": r["metadata"]["name"],
                "uid": r["metadata"]["uid"],
                "updated_at": r["metadata"].get("updated_at"),
            }
            for r in service.list(kind)
            if name is None or r["metadata"]["name"] == name
        ]
    print_rows(rows, fmt)


#: the largest integer SQLite holds (a LIMIT or OFFSET beyond it is a float to SQLite)
_SQL_INT_MAX = 2**63 - 1


def _list_runs(name: str | None, fmt: str, limit: int, page: int, state: str | None) -> None:
    if limit < 0 or page < 1:
        raise UserError("--limit must be 0 or more and --page 1 or more")
    if limit > _SQL_INT_MAX or (page - 1) * limit > _SQL_INT_MAX:
        pages = _SQL_INT_MAX // max(limit, 1) + 1
        msg = f"--page {page} --limit {limit}: out of range (at most --page {pages})"
        raise UserError(msg)
    store = get_store()
    workflow = name
    if name is not None:
        row = store.find_run(name, prefix=False)
        if row is not None:
            rows, total, workflow = [{k: row[k] for k in RUN_SUMMARY_KEYS}], 1, None
    if workflow is not None or name is None:
        rows, total = store.list_runs(
            limit=limit, offset=(page - 1) * limit, workflow=workflow, state=state
        )
    if fmt != "table":
        print_rows(rows, fmt)
        return
    if not rows:
        typer.echo("no runs" + (f" of workflow {workflow!r}" if workflow else ""), err=True)
        return
    print_rows(
        [
            {
                "id": r["id"],
                "workflow": r["workflow"],
                "state": r["state"],
                "source": r["source"],
                "started": _when(r["started_at"]),
                "duration": _duration(r),
            }
            for r in rows
        ],
        "table",
    )
    if limit and total > len(rows):
        first = (page - 1) * limit + 1
        typer.echo(
            f"runs {first}-{first + len(rows) - 1} of {total}, newest first "
            f"(--page {page + 1} for more, --limit 0 for all)",
            err=True,
        )


def _duration(row: dict[str, Any]) -> str:
    start, end = parse_time(row["started_at"]), parse_time(row["finished_at"])
    return f"{(end - start).total_seconds():.2f}s" if start and end else ""


def runs_list(
    ctx: typer.Context,
    workflow: str | None = typer.Option(
        None, "--workflow", "-w", help="Only runs of this workflow."
    ),
    state: str | None = typer.Option(None, "--state", help="Only runs in this state."),
    fmt: str = typer.Option("table", "--format", help="table, json or yaml."),
    limit: int = typer.Option(50, "--limit", "-l", help="How many per page (0: all)."),
    page: int = typer.Option(1, "--page", help="Which page, newest first."),
    server: str | None = typer.Option(
        None, "--server", help="Act on the service at this URL (default: service.url)."
    ),
) -> None:
    """The run history (same as `get runs`); `runs cancel ID` and `runs logs ID` act on one run."""
    if ctx.invoked_subcommand is not None:
        return
    check_format(fmt, LIST_FORMATS)
    # lazy: keeps `flowstage --help` fast (it imports every command module)
    from flowstage.cli.remote import server_url

    url = server_url(server)
    if url is not None:
        _get_remote(url, "run", workflow, fmt, limit)
        return
    _list_runs(workflow, fmt, limit, page, state)


def cancel(
    run_id: str = typer.Argument(..., help="Run id (or a unique prefix)."),
    timeout: float = typer.Option(
        10.0, "--timeout", help="Seconds to wait before killing the run's process."
    ),
    server: str | None = typer.Option(
        None, "--server", help="Act on the service at this URL (default: service.url)."
    ),
) -> None:
    """Stop a pending or running run; it ends as cancelled."""
    # lazy: keeps `flowstage --help` fast (it imports every command module)
    from flowstage.cli.remote import RemoteService, server_url

    url = server_url(server)
    if url is not None:
        record = RemoteService(url).cancel(run_id)
        typer.echo(f"run {record['id']} {record['state']}")
        return
    # lazy: keeps `flowstage --help` fast (it imports every command module)
    from flowstage.runner.background import cancel_run

    row = cancel_run(run_id, timeout)
    typer.echo(f"run {row['id']} {row['state']}")


def prune(
    older_than: str | None = typer.Option(
        None, "--older-than", help="Delete ended runs older than this (30d, 12h)."
    ),
    keep: int | None = typer.Option(None, "--keep", help="Always keep the newest N runs."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would go."),
) -> None:
    """Delete ended runs with their result and log files (default: store.run_retention)."""
    # lazy: keeps `flowstage --help` fast (it imports every command module)
    from flowstage.core.units import parse_duration
    from flowstage.state.retention import prune_runs

    store = get_store()
    age = store.settings.run_retention if older_than is None and keep is None else None
    if older_than is not None:
        try:
            age = parse_duration(older_than)
        except ValueError as exc:
            raise UserError(f"--older-than: {exc}") from None
    if age is None and keep is None:
        raise UserError("give --older-than DURATION and/or --keep N, or set store.run_retention")
    ids = prune_runs(store, older_than=age, keep=keep, dry_run=dry_run)
    for run_id in ids:
        typer.echo(f"run/{run_id} {'would be deleted' if dry_run else 'deleted'}")
    typer.echo(f"{len(ids)} run(s) {'to prune' if dry_run else 'pruned'}")


def logs(
    run_id: str = typer.Argument(..., help="Run id (or a unique prefix)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until the run ends."),
) -> None:
    """Print what a background run's stages printed and logged."""

    # lazy: keeps `flowstage --help` fast (it imports every command module)
    from flowstage.runner.background import read_log

    row, path = read_log(run_id)
    position = 0
    while True:
        try:
            with open(path, "rb") as fh:
                fh.seek(position)
                chunk = fh.read()
        except FileNotFoundError:
            chunk = b""
        if chunk:
            position += len(chunk)
            sys.stdout.write(chunk.decode("utf-8", "replace"))
            sys.stdout.flush()
        if not follow or row["state"] not in ACTIVE_STATES:
            return
        time.sleep(0.2)
        row = get_store().find_run(row["id"]) or row


# -- inspect ------------------------------------------------------------------------------------


def inspect(
    kind: str = typer.Argument(..., help="workflow, config or run."),
    name: str = typer.Argument(..., help="Name (for a run: its id or a unique prefix)."),
    fmt: str = typer.Option("yaml", "--format", help="yaml or json."),
) -> None:
    """Show one resource in full: a workflow with the configs that apply to it, a config
    with the workflows it applies to, or a run with every stage."""
    check_format(fmt, ("yaml", "json"))
    resource_kind = _kind(kind, ("workflow", "config", "run"))
    if resource_kind == "run":
        row = get_store().find_run(name)
        if row is None:
            raise UnknownNameError(f"no run with id {name!r} (`flowstage runs` lists them)")
        value = describe_run(row)
    else:
        # lazy: keeps `flowstage --help` fast (it imports every command module)
        from flowstage.state import resources as catalog

        describe = (
            catalog.describe_workflow if resource_kind == "workflow" else catalog.describe_config
        )
        value = describe(name, _plugins())
    print_value(value, fmt)


# -- config show ----------------------------------------------------------------------------------


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
    app.command()(apply)
    app.command()(get)
    app.command()(inspect)
    app.command()(delete)
    runs_app = typer.Typer(
        help="The run history; `runs cancel ID`, `runs logs ID`, `runs prune`, `runs retry ID`."
    )
    runs_app.callback(invoke_without_command=True)(runs_list)
    runs_app.command()(cancel)
    runs_app.command()(logs)
    runs_app.command()(prune)
    runs_app.command()(retry)
    app.add_typer(runs_app, name="runs")
    config_app = typer.Typer(
        help="Settings: `config show` prints the effective ones and their sources.",
        no_args_is_help=True,
    )
    config_app.command("show")(config_show)
    app.add_typer(config_app, name="config")
