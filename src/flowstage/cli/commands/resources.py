"""Resources the way ``kubectl`` manages them: ``apply``, ``get``, ``inspect`` and
``delete`` workflows, configs, trigger rules and runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from flowstage.cli.commands.common import check_format
from flowstage.cli.commands.runs import list_remote_runs, list_runs
from flowstage.cli.output import LIST_FORMATS, local_time, print_rows, print_value
from flowstage.core.errors import UnknownNameError, UserError
from flowstage.core.plugin_manager import default_plugins
from flowstage.state.rows import describe_run
from flowstage.state.store import get_store


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


# -- get / inspect -------------------------------------------------------------------------------


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
    if resource_kind == "run":
        if url is not None:
            list_remote_runs(url, name, fmt, limit)
        else:
            list_runs(name, fmt, limit, page, state)
        return
    if url is not None:
        _get_remote(url, resource_kind, name, fmt)
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
                    "last fire": local_time(r["last_fire"]) if r["last_fire"] else "-",
                    "next fire": local_time(r["next_fire"]) if r["next_fire"] else "-",
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
                    "updated": local_time(r["updated_at"]),
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
                    "updated": local_time(r["updated_at"]),
                }
                for r in rows
            ]
    if fmt == "table" and not rows:
        typer.echo(f"no {resource_kind}s (`flowstage apply -p FILE` adds them)", err=True)
        return
    print_rows(rows, fmt)


def _get_remote(url: str, kind: str, name: str | None, fmt: str) -> None:
    # lazy: keeps `flowstage --help` fast (it imports every command module)
    from flowstage.cli.remote import RemoteService

    rows = [
        {
            "name": r["metadata"]["name"],
            "uid": r["metadata"]["uid"],
            "updated_at": r["metadata"].get("updated_at"),
        }
        for r in RemoteService(url).list(kind)
        if name is None or r["metadata"]["name"] == name
    ]
    print_rows(rows, fmt)


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


def register(app: typer.Typer) -> None:
    """Add ``apply``, ``get``, ``inspect`` and ``delete`` to ``app``."""
    app.command()(apply)
    app.command()(get)
    app.command()(inspect)
    app.command()(delete)
