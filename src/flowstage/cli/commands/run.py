"""``flowstage run``: run a workflow and print its result."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from flowstage.cli.commands.common import (
    NO_CACHE_HELP,
    REFRESH_CACHE_HELP,
    cache_from_flags,
    check_format,
    executor_from_flags,
    input_from_args,
    load_workflow_arg,
)
from flowstage.cli.output import print_value
from flowstage.core.errors import StageError, UserError
from flowstage.core.inputs import parse_input_args, read_input_file

if TYPE_CHECKING:
    from flowstage.core.runs import Run


def run(
    ctx: typer.Context,
    workflow: str = typer.Argument(
        ..., help="A workflow YAML file, or the name of an applied or shipped workflow."
    ),
    input_file: Path | None = typer.Option(
        None, "--input-file", "-f", help="JSON or YAML file with the run input."
    ),
    executor: str | None = typer.Option(
        None, "--executor", "-e", help="Executor name (default: settings, else local)."
    ),
    executor_option: list[str] = typer.Option(
        [], "--executor-option", "-o", help="Executor option KEY=VALUE (repeatable)."
    ),
    namespace: str = typer.Option(
        "default", "--namespace", "-n", help="Object-store namespace of the run."
    ),
    fmt: str = typer.Option("raw", "--format", help="Result format: json, yaml, table or raw."),
    no_wait: bool = typer.Option(
        False, "--no-wait", help="Start the run in the background and print its id."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    no_cache: bool = typer.Option(False, "--no-cache", help=NO_CACHE_HELP),
    refresh_cache: bool = typer.Option(False, "--refresh-cache", help=REFRESH_CACHE_HELP),
    server: str | None = typer.Option(
        None, "--server", help="Run on the service at this URL (default: service.url)."
    ),
    # flowctl's flags: accepted so that its commands run unchanged (never run inputs)
    wait: bool = typer.Option(
        False, "--wait", help="flowctl's flag: wait for the result (the default)."
    ),
    result_only: bool = typer.Option(
        False, "--result-only", help="flowctl's flag: print only the result (the default)."
    ),
    show_progress: bool = typer.Option(
        False, "--show-progress", help="flowctl's flag: show progress (the default)."
    ),
    disable_progress: bool = typer.Option(
        False, "--disable-progress", help="flowctl's flag: same as --quiet."
    ),
) -> None:
    """Run WORKFLOW; inputs are given as --KEY VALUE (--a.b 1 nests, --l[] x appends)."""
    check_format(fmt)
    if wait and no_wait:
        raise UserError("--wait and --no-wait contradict each other: give one")
    quiet = quiet or disable_progress
    cache = cache_from_flags(no_cache, refresh_cache)
    run_input = read_input_file(input_file) if input_file else {}
    # lazy: keeps `flowstage --help` fast (it imports every command module)
    from flowstage.cli.remote import RemoteService, server_url

    url = server_url(server)
    if url is not None:
        if ctx.args:
            run_input.update(parse_input_args(ctx.args))
        remote = RemoteService(url).run(workflow, run_input, wait=not no_wait, cache=cache)
        _print_remote(remote, fmt, no_wait)
        return
    if ctx.args:
        run_input.update(input_from_args(ctx.args, load_workflow_arg(workflow)))
    spec = executor_from_flags(executor, executor_option)
    if no_wait:
        # lazy: keeps `flowstage --help` fast (it imports every command module)
        from flowstage.runner.background import start_background_run

        print(
            start_background_run(
                workflow, run_input, executor=spec, namespace=namespace, cache=cache
            ),
            flush=True,
        )
        return
    # lazy: keeps `flowstage --help` fast (it imports every command module)
    from flowstage.cli.progress import ProgressDisplay
    from flowstage.runner.api import arun_workflow

    display = None if quiet else ProgressDisplay()
    try:
        run: Run = asyncio.run(
            arun_workflow(
                workflow,
                run_input,
                executor=spec,
                namespace=namespace,
                return_run=True,
                source="cli",
                on_run=display.attach if display else None,
                cache=cache,
            )
        )
    finally:
        if display:
            display.stop()
    report(run, fmt)


def retry(
    run_id: str = typer.Argument(..., help="The run to retry: its id or a unique prefix."),
    executor: str | None = typer.Option(
        None, "--executor", "-e", help="Executor name (default: the original run's)."
    ),
    executor_option: list[str] = typer.Option(
        [], "--executor-option", "-o", help="Executor option KEY=VALUE (repeatable)."
    ),
    fmt: str = typer.Option("raw", "--format", help="Result format: json, yaml, table or raw."),
    no_wait: bool = typer.Option(
        False, "--no-wait", help="Start the retry in the background and print its id."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    no_cache: bool = typer.Option(False, "--no-cache", help=NO_CACHE_HELP),
    refresh_cache: bool = typer.Option(False, "--refresh-cache", help=REFRESH_CACHE_HELP),
    server: str | None = typer.Option(
        None, "--server", help="Retry on the service at this URL (default: service.url)."
    ),
) -> None:
    """Retry a failed or cancelled run: the stages that finished are not called again."""
    check_format(fmt)
    cache = cache_from_flags(no_cache, refresh_cache)
    spec = executor_from_flags(executor, executor_option)
    # lazy: keeps `flowstage --help` fast (it imports every command module)
    from flowstage.cli.remote import RemoteService, server_url

    url = server_url(server)
    if url is not None:
        overrides = {"executor": spec} if spec else None
        remote = RemoteService(url).retry(run_id, overrides, wait=not no_wait, cache=cache)
        _print_remote(remote, fmt, no_wait)
        return
    if no_wait:
        # lazy: keeps `flowstage --help` fast (it imports every command module)
        from flowstage.runner.background import start_background_run

        print(
            start_background_run(None, None, executor=spec, retry_of=run_id, cache=cache),
            flush=True,
        )
        return
    # lazy: keeps `flowstage --help` fast (it imports every command module)
    from flowstage.cli.progress import ProgressDisplay
    from flowstage.runner.api import arun_workflow

    display = None if quiet else ProgressDisplay()

    def started(run: Run) -> None:
        reused = [
            name if note.startswith("reused") else f"{name} ({note.partition(' reused')[0]})"
            for name, note in ((n, r.note) for n, r in run.stages.items())
            if note
        ]
        what = ", ".join(reused) or "nothing"
        print(f"run {run.id} retries run {run.retry_of}: reusing {what}", file=sys.stderr)
        if display is not None:
            display.attach(run)

    try:
        run: Run = asyncio.run(
            arun_workflow(
                None,
                executor=spec,
                return_run=True,
                source="cli",
                on_run=started,
                retry_of=run_id,
                cache=cache,
            )
        )
    finally:
        if display:
            display.stop()
    report(run, fmt)


def _print_remote(record: dict[str, Any], fmt: str, no_wait: bool) -> None:
    """A service's run record: its id with --no-wait, else its result (exit 1 on failure)."""
    if no_wait:
        print(record["id"], flush=True)
        return
    if record["state"] == "finished":
        print_value(record["result"], fmt)
        return
    print(f"error: run {record['id']} {record['state']}: {record['error']}", file=sys.stderr)
    raise typer.Exit(1)


def report(run: Run, fmt: str) -> None:
    """Print the result (stdout), dropped items and errors (stderr); exit 1 on failure."""
    for stage, items in run.failed_items.items():
        print(
            f"warning: stage {stage!r}: {len(items)} item(s) failed and were left out of its "
            "output:",
            file=sys.stderr,
        )
        for item in items:
            print(f"  item {item['index']}: {item['error']}", file=sys.stderr)
    if run.state == "finished":
        print_value(run.result, fmt)
        return
    exc: Any = run.exception
    if isinstance(exc, UserError):
        raise exc
    if isinstance(exc, StageError) and exc.traceback:
        print(f"Traceback of stage {exc.stage!r} (from the worker):", file=sys.stderr)
        print(exc.traceback.rstrip(), file=sys.stderr)
    print(f"error: run {run.id} {run.state}: {run.error}", file=sys.stderr, flush=True)
    raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``run`` (it takes unknown ``--KEY VALUE`` options as inputs) to ``app``."""
    app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(run)
