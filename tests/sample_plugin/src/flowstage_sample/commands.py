"""``flowstage sample-squares``: a command this plugin adds to the ``flowstage`` CLI."""

from __future__ import annotations

import json

import typer


def sample_squares(
    count: int = typer.Option(5, "--count", "-c", min=0, help="How many numbers to square (0..COUNT-1)."),
    executor: str = typer.Option("local", "--executor", "-e", help="Executor to run on."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Sum the squares of 0..COUNT-1 with the workflow flowstage-sample ships."""
    from flowstage import run_workflow

    total = run_workflow("sample_squares", {"count": count}, executor=executor, record=False)
    if as_json:
        typer.echo(json.dumps({"count": count, "total": total}))
    else:
        typer.echo(f"sum of squares below {count}: {total}")
