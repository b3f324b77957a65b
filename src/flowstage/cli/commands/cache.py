"""``flowstage cache ls|rm|clear``: the stored results of stages with ``cache:``."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import typer

from flowstage.cli.commands.common import check_format
from flowstage.cli.output import print_value
from flowstage.core.errors import UserError

if TYPE_CHECKING:  # imported when a command runs: `flowstage --help` stays fast
    from flowstage.storage.stage_cache import ArtifactCacheStore

STAGE_HELP = "Only the entries of stages of this name."
WORKFLOW_HELP = "Only the entries of stages of this workflow."


def _store() -> ArtifactCacheStore:
    from flowstage.storage.scope import run_settings
    from flowstage.storage.stage_cache import ArtifactCacheStore

    return ArtifactCacheStore.from_settings(run_settings()["artifacts"])


def _when(seconds: Any) -> str | None:
    if not isinstance(seconds, (int, float)):
        return None
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    return moment.isoformat(timespec="seconds")


def _chosen(
    entries: list[dict[str, Any]], stage: str | None, workflow: str | None
) -> list[dict[str, Any]]:
    return [
        e
        for e in entries
        if (stage is None or e.get("stage") == stage)
        and (workflow is None or e.get("workflow") == workflow)
    ]


def ls(
    stage: str | None = typer.Option(None, "--stage", "-s", help=STAGE_HELP),
    workflow: str | None = typer.Option(None, "--workflow", "-w", help=WORKFLOW_HELP),
    fmt: str = typer.Option("table", "--format", help="table, json or yaml."),
) -> None:
    """List cache entries: stage, workflow and target, key prefix, size, created, expires."""
    from flowstage.storage.stage_cache import is_expired  # lazy: as _store()

    check_format(fmt, ("table", "json", "yaml"))
    now = time.time()
    rows = []
    for entry in _chosen(_store().entries(), stage, workflow):
        expires = _when(entry.get("expires"))
        rows.append(
            {
                "key": entry["key"][:12] if fmt == "table" else entry["key"],
                "stage": entry.get("stage", "?"),
                "workflow": entry.get("workflow", "?"),
                "target": entry.get("target", "?"),
                "type": entry.get("type", "?"),
                "size": entry["file_size"],
                "created": _when(entry.get("created")),
                "expires": f"{expires} (expired)" if is_expired(entry, now) else expires or "never",
                **({"corrupt": entry["corrupt"]} if entry["corrupt"] else {}),
            }
        )
    if not rows and fmt == "table":
        empty = "no entries" if stage or workflow else "the stage cache is empty"
        typer.echo(empty, err=True)
        return
    print_value(rows, fmt)


def rm(
    keys: list[str] = typer.Argument(None, help="Entry keys, or unique prefixes of 4+ digits."),
    stage: str | None = typer.Option(None, "--stage", "-s", help=STAGE_HELP),
    workflow: str | None = typer.Option(None, "--workflow", "-w", help=WORKFLOW_HELP),
) -> None:
    """Remove cache entries: by key, or every entry of a stage and/or workflow."""
    if not keys and stage is None and workflow is None:
        raise UserError("give entry KEYS, or --stage NAME and/or --workflow NAME")
    if keys and (stage is not None or workflow is not None):
        raise UserError("give either KEYS or --stage/--workflow, not both")
    store = _store()
    entries = store.entries()
    chosen = _chosen(entries, stage, workflow) if not keys else _by_prefix(entries, keys)
    for entry in chosen:
        store.remove(entry["key"])
    typer.echo(f"removed {len(chosen)} cache entr{'y' if len(chosen) == 1 else 'ies'}")


def _by_prefix(entries: list[dict[str, Any]], prefixes: list[str]) -> list[dict[str, Any]]:
    chosen = []
    for prefix in prefixes:
        if len(prefix) < 4:
            raise UserError(f"cache key {prefix!r}: give at least 4 digits")
        found = [e for e in entries if e["key"].startswith(prefix.lower())]
        if not found:
            raise UserError(f"no cache entry with key {prefix!r} (`flowstage cache ls` lists them)")
        if len(found) > 1:
            msg = f"cache key {prefix!r} matches {len(found)} entries: give more digits"
            raise UserError(msg)
        chosen.append(found[0])
    return chosen


def clear(
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    expired: bool = typer.Option(False, "--expired", help="Only the expired entries."),
) -> None:
    """Remove every cache entry (or only the expired ones); asks first unless --yes."""
    from flowstage.storage.stage_cache import is_expired  # lazy: as _store()

    store = _store()
    now = time.time()
    entries = [e for e in store.entries() if not expired or is_expired(e, now)]
    if not entries:
        typer.echo("nothing to remove")
        return
    what = f"{len(entries)} {'expired ' if expired else ''}cache entr" + (
        "y" if len(entries) == 1 else "ies"
    )
    if not yes:
        if not sys.stdin.isatty():
            raise UserError(f"this removes {what}: add --yes to confirm")
        typer.confirm(f"Remove {what}?", abort=True)
    for entry in entries:
        store.remove(entry["key"])
    typer.echo(f"removed {what}")


def register(app: typer.Typer) -> None:
    """Add the ``cache`` command group (``ls``, ``rm``, ``clear``) to ``app``.

    :param app: the CLI's root application
    """
    cache_app = typer.Typer(
        help="The stage cache (stages with `cache:`): ls, rm, clear.", no_args_is_help=True
    )
    cache_app.command("ls")(ls)
    cache_app.command("rm")(rm)
    cache_app.command("clear")(clear)
    app.add_typer(cache_app, name="cache")
