"""The built-in CLI commands, registered through the same hook as a plugin's."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowstage.cli.commands import plugins, run, workflows
from flowstage.core.plugin_manager import hookimpl

if TYPE_CHECKING:
    import typer


@hookimpl
def flowstage_register_commands(app: typer.Typer) -> None:
    run.register(app)
    workflows.register(app)
    plugins.register(app)
    __import__("flowstage.cli.commands.resources").cli.commands.resources.register(app)
    __import__("flowstage.cli.commands.runs").cli.commands.runs.register(app)
    __import__("flowstage.cli.commands.config").cli.commands.config.register(app)
    __import__("flowstage.cli.commands.objects").cli.commands.objects.register(app)
    __import__("flowstage.cli.commands.cache").cli.commands.cache.register(app)
    __import__("flowstage.cli.commands.serve").cli.commands.serve.register(app)
    __import__("flowstage.cli.commands.compat").cli.commands.compat.register(app)
