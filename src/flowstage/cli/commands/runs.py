"""The run history: ``flowstage runs`` lists it; ``runs cancel``, ``runs logs``,
``runs prune`` and ``runs retry`` act on runs."""

from __future__ import annotations

import sys
import time
from typing import Any

import typer

from flowstage.cli.commands.common import check_format
from flowstage.cli.commands.run import retry
from flowstage.cli.output import LIST_FORMATS, local_time, print_rows
from flowstage.core.errors import UserError
from flowstage.core.runs import ACTIVE_STATES
from flowstage.state.history import RUN_SUMMARY_KEYS
from flowstage.state.rows import parse_time
from flowstage.state.store import get_store

#: the largest integer SQLite holds (a LIMIT or OFFSET beyond it is a float to SQLite)
_SQL_INT_MAX = 2**63 - 1


def list_runs(name: str | None, fmt: str, limit: int, page: int, state: str | None) -> None:
    """Print a page of the local run history, newest first (``runs`` and ``get runs``).

    :param name: a run id (that run alone) or a workflow name (its runs); None: all runs
    :param fmt: ``table`` (with a "runs A-B of N" line on stderr when more pages exist),
        ``json`` or ``yaml``
    :param limit: runs per page (0: all)
    :param page: which page, from 1
    :param state: only runs in this state (None: any)
    :raises UserError: ``limit`` or ``page`` out of range
    """
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
                "started": local_time(r["started_at"]),
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


def list_remote_runs(url: str, workflow: str | None, fmt: str, limit: int) -> None:
    """The runs of the service at ``url`` (of ``workflow``, if given), newest first."""
    # lazy: keeps `flowstage --help` fast (it imports every command module)
    from flowstage.cli.remote import RemoteService

    keys = ("id", "workflow", "state", "source", "started_at", "finished_at")
    rows = [{k: r.get(k) for k in keys} for r in RemoteService(url).runs(workflow, limit)]
    print_rows(rows, fmt)


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
        list_remote_runs(url, workflow, fmt, limit)
        return
    list_runs(workflow, fmt, limit, page, state)


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


def register(app: typer.Typer) -> None:
    """Add the ``runs`` command group (the list, ``cancel``, ``logs``, ``prune``,
    ``retry``) to ``app``."""
    runs_app = typer.Typer(
        help="The run history; `runs cancel ID`, `runs logs ID`, `runs prune`, `runs retry ID`."
    )
    runs_app.callback(invoke_without_command=True)(runs_list)
    runs_app.command()(cancel)
    runs_app.command()(logs)
    runs_app.command()(prune)
    runs_app.command()(retry)
    app.add_typer(runs_app, name="runs")
