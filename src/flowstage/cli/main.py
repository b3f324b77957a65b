"""The ``flowstage`` console script: error handling and exit codes around the app.

Exit codes: 0 success, 1 the workflow failed, 2 bad usage / bad workflow / unknown
name, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Sequence

import typer
import typer.main

from flowstage.cli.app import build_app
from flowstage.core.errors import FlowstageError, StageError, UserError
from flowstage.core.plugin_manager import default_plugins

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


_HANDLER_NAME = "flowstage-cli"


def _configure_logging(debug: bool) -> None:
    root = logging.getLogger("flowstage")
    # run_cli may run many times in one process (tests, embedding): replace the handler
    # an earlier call added, or every message would print once per earlier call
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    root.propagate = False


def error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and exit."""
    sys.exit(run_cli(list(sys.argv[1:] if argv is None else argv)))


def run_cli(args: list[str]) -> int:
    """Run the CLI; the exit code."""

    # The click that typer is built on: recent typer vendors its own copy (typer._click),
    # whose exceptions are not the ``click`` package's (typer.BadParameter is one of them),
    # and has Exit and Abort of its own; older typer re-exports click's.
    click_errors = sys.modules[typer.BadParameter.__module__]
    exits = (typer.Exit, getattr(click_errors, "Exit", typer.Exit))
    aborts = (typer.Abort, getattr(click_errors, "Abort", typer.Abort), KeyboardInterrupt)

    debug = "--debug" in args
    _configure_logging(debug)
    try:
        command = typer.main.get_command(build_app(default_plugins()))
        result = command.main(args=args, prog_name="flowstage", standalone_mode=False)
        return int(result or 0) if isinstance(result, int) else EXIT_OK
    except exits as exc:
        return int(exc.exit_code)
    except click_errors.ClickException as exc:
        exc.show()
        return EXIT_USAGE
    except aborts:
        print("\ninterrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except UserError as exc:
        if debug:
            traceback.print_exc()
        error(str(exc))
        return EXIT_USAGE
    except StageError as exc:
        error(str(exc))
        return EXIT_FAILED
    except FlowstageError as exc:
        error(str(exc))
        return EXIT_FAILED
