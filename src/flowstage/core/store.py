"""The run history and applied resources (placeholder until the SQLite store lands)."""

from __future__ import annotations

from typing import Any


def matching_config_data(workflow: Any) -> dict[str, Any]:
    return {}


class RunRecorder:
    def __init__(self, run: Any) -> None:
        self.run = run

    def started(self) -> None:
        pass

    def finished(self) -> None:
        pass
