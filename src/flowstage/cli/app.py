"""Building the ``flowstage`` typer application from the loaded plugins."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from flowstage import __version__
from flowstage.core.plugin_manager import default_plugins

if TYPE_CHECKING:
    import typer

    from flowstage.core.plugin_manager import FlowstagePlugins

HELP = """Run YAML workflows of plain Python functions locally, on Dask or on Ray.

Start with `flowstage run WORKFLOW.yaml --KEY VALUE`; `flowstage validate` checks a
workflow without running it."""


def build_app(plugins: FlowstagePlugins | None = None) -> typer.Typer:
    """A fresh root app with the commands of every plugin (built-ins included)."""

    app = typer.Typer(
        name="flowstage",
        help=HELP,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )

    def show_version(wanted: bool) -> None:
        if wanted:
            typer.echo(f"flowstage {__version__}")
            raise typer.Exit()

    @app.callback()
    def root(
        debug: bool = typer.Option(
            False, "--debug", help="Show tracebacks for errors and plugin failures."
        ),
        version: bool = typer.Option(
            False,
            "--version",
            callback=show_version,
            is_eager=True,
            help="Print flowstage's version and exit.",
        ),
    ) -> None:
        """Run YAML workflows of plain Python functions locally, on Dask or on Ray."""

    (plugins or default_plugins()).register_commands(app)
    return app
