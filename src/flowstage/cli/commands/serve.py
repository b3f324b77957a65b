"""``flowstage serve``: the long-lived service with its HTTP API."""

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
    """Serve the Flowdapt-compatible API with one warm executor until SIGTERM or Ctrl-C."""

    settings = load_settings().service
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    if overrides:
        settings = settings.model_copy(update=overrides)
    # FastAPI and uvicorn load here, not when the CLI starts (`flowstage --help` stays fast)
    try:
        # lazy: keeps `flowstage --help` fast (it imports every command module)
        from flowstage.service.server import serve as run_server
    except ImportError as exc:
        msg = f"flowstage serve needs the service extra ({exc}): pip install 'flowstage[service]'"
        raise UserError(msg) from None

    run_server(settings, executor=executor)


def register(app: typer.Typer) -> None:
    app.command()(serve)
