"""``flowstage serve``: the long-lived service with its HTTP API and dashboard; and
``flowstage ui``: the dashboard over the local store, firing no triggers."""

from __future__ import annotations

import typer

from flowstage.core.errors import UserError
from flowstage.core.settings import load_settings


def serve(
    host: str | None = typer.Option(
        None, "--host", help="Address to listen on (default: service.host, 127.0.0.1)."
    ),
    port: int | None = typer.Option(
        None, "--port", "-p", help="Port to listen on (default: service.port, 8080)."
    ),
    executor: str | None = typer.Option(
        None, "--executor", "-e", help="Executor for every run (default: settings, else local)."
    ),
) -> None:
    """Serve the Flowdapt-compatible API and the dashboard (/ui/) with one warm executor
    until SIGTERM or Ctrl-C."""
    _serve(host, port, executor, run_triggers=True)


def ui(
    host: str | None = typer.Option(
        None, "--host", help="Address to listen on (default: service.host, 127.0.0.1)."
    ),
    port: int | None = typer.Option(
        None, "--port", "-p", help="Port to listen on (default: service.port, 8080)."
    ),
    executor: str | None = typer.Option(
        None, "--executor", "-e", help="Executor of runs started from the pages."
    ),
) -> None:
    """Serve the web dashboard (at /ui/) over this app dir's store; fires no triggers."""
    _serve(host, port, executor, run_triggers=False)


def _serve(host: str | None, port: int | None, executor: str | None, run_triggers: bool) -> None:

    settings = load_settings().service
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    if overrides:
        settings = settings.model_copy(update=overrides)
    # FastAPI and uvicorn load here, not when the CLI starts (`flowstage --help` stays fast)
    try:
        # lazy: keeps `flowstage --help` fast (it imports every command module)
        from flowstage.service.server import serve as run_server
    except ImportError as exc:
        name = "serve" if run_triggers else "ui"
        msg = f"flowstage {name} needs the service extra ({exc}): pip install 'flowstage[service]'"
        raise UserError(msg) from None
    if not run_triggers:
        typer.echo(f"dashboard: http://{settings.host}:{settings.port}/ui/", err=True)
    run_server(settings, executor=executor, run_triggers=run_triggers)


def register(app: typer.Typer) -> None:
    """Add ``serve`` and ``ui`` to ``app``."""
    app.command()(serve)
    app.command()(ui)
