"""Registers the built-in stage types, ``simple`` and ``parameterized``, like any plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowstage.core.plugin_manager import hookimpl
from flowstage.core.stage_types import ParameterizedStage, SimpleStage

if TYPE_CHECKING:
    from flowstage.core.registry import Registry


@hookimpl
def flowstage_register_stage_types(registry: Registry[Any]) -> None:
    registry.add(SimpleStage)
    registry.add(ParameterizedStage)
