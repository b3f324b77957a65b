"""Helpers shared by the built-in commands."""

from __future__ import annotations

from typing import Any

from flowstage.cli.inputs import _assign, parse_scalar
from flowstage.cli.output import FORMATS
from flowstage.core.errors import UserError


def check_format(fmt: str, allowed: tuple[str, ...] = FORMATS) -> str:
    if fmt not in allowed:
        raise UserError(f"unknown format {fmt!r} (expected one of: {', '.join(allowed)})")
    return fmt


def executor_from_flags(name: str | None, options: list[str]) -> dict[str, Any] | None:
    """The executor spec ``--executor`` and ``--executor-option KEY=VALUE`` ask for."""
    if name is None and not options:
        return None
    from flowstage.runner.prepare import executor_spec

    spec = {"name": name} if name else executor_spec(None)
    for option in options:
        key, sep, text = option.partition("=")
        if not sep or not key:
            raise UserError(
                f"--executor-option {option!r}: expected KEY=VALUE (e.g. processes=true)"
            )
        _assign(spec, key.replace("-", "_"), parse_scalar(text))
    return spec
