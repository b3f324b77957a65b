"""Config data for a run: the one place where ``kind: config`` resources are merged."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flowstage.core.appdir import deep_merge
from flowstage.core.models import ConfigResource, Workflow


def applying(configs: Iterable[ConfigResource], workflow: Workflow) -> list[ConfigResource]:
    """The configs whose selector matches ``workflow`` (no selector: all), in name order."""
    return sorted(
        (c for c in configs if c.spec.selector is None or c.spec.selector.matches(workflow)),
        key=lambda c: c.name,
    )


def merge_configs(
    configs: Iterable[ConfigResource],
    workflow: Workflow,
    override: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The data of every config applying to ``workflow``, deep-merged in name order
    (later names win), then ``override`` over all of it."""
    data: dict[str, Any] = {}
    for config in applying(configs, workflow):
        data = deep_merge(data, config.spec.data)
    return deep_merge(data, override) if override else data
