"""Helpers shared by the built-in commands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowstage.cli.output import FORMATS
from flowstage.core.appdir import app_dir
from flowstage.core.errors import UserError
from flowstage.core.inputs import assign_key, parse_input_args, parse_scalar

if TYPE_CHECKING:  # imported when a command runs: `flowstage --help` stays fast
    from flowstage.core.models import Workflow


NO_CACHE_HELP = "Neither read nor write the stage cache (stages with `cache:` run)."
REFRESH_CACHE_HELP = "Run stages with `cache:` again and store their new results."


def cache_from_flags(no_cache: bool, refresh_cache: bool) -> bool | str:
    """``run_workflow(cache=...)`` for ``--no-cache`` / ``--refresh-cache``."""
    if no_cache and refresh_cache:
        raise UserError("--no-cache and --refresh-cache contradict each other: give one")
    return False if no_cache else "refresh" if refresh_cache else True


def check_format(fmt: str, allowed: tuple[str, ...] = FORMATS) -> str:
    if fmt not in allowed:
        raise UserError(f"unknown format {fmt!r} (expected one of: {', '.join(allowed)})")
    return fmt


def executor_from_flags(name: str | None, options: list[str]) -> dict[str, Any] | None:
    """The executor spec ``--executor`` and ``--executor-option KEY=VALUE`` ask for."""
    if name is None and not options:
        return None
    # lazy: keeps `flowstage --help` fast (it imports every command module)
    from flowstage.runner.prepare import executor_spec

    spec = {"name": name} if name else executor_spec(None)
    for option in options:
        key, sep, text = option.partition("=")
        if not sep or not key:
            raise UserError(
                f"--executor-option {option!r}: expected KEY=VALUE (e.g. processes=true)"
            )
        assign_key(spec, key.replace("-", "_"), parse_scalar(text))
    return spec


def load_workflow_arg(path: str) -> Workflow:
    """The validated workflow a command's WORKFLOW argument names (a file or a name)."""
    # lazy: keeps `flowstage --help` fast (it imports every command module)
    from flowstage.runner.prepare import prepare_run

    return prepare_run(path, with_input=False).workflow


def input_from_args(args: list[str], workflow: Workflow) -> dict[str, Any]:
    """The run input ``--KEY VALUE`` arguments give ``workflow``: each value as its root
    stages' parameters want it (``--code 007`` stays ``"007"`` for ``code: str``)."""
    if not args:
        return {}
    # lazy: keeps `flowstage --help` fast (it imports every command module)
    from flowstage.core.loading import input_annotations

    annotations = input_annotations(workflow, search_paths=(str(app_dir()),))
    return parse_input_args(args, annotations)
