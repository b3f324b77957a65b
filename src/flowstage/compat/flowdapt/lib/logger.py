"""``flowdapt.lib.logger``: structlog-style loggers on the standard ``logging`` module.

``logger.info("Event happened", city="Oslo", n=3)`` logs ``Event happened city='Oslo'
n=3`` through ``logging.getLogger(name)``, so flowstage's run logs and any handler the
user configured see it.
"""

from __future__ import annotations

import logging
from typing import Any


class BoundLogger:
    """A logger whose methods take an event and key-value pairs; ``bind`` adds pairs."""

    def __init__(self, logger: logging.Logger, context: dict[str, Any] | None = None) -> None:
        self._logger = logger
        self._context = dict(context or {})

    def bind(self, **values: Any) -> BoundLogger:
        return BoundLogger(self._logger, {**self._context, **values})

    def _log(self, level: int, event: object, *args: Any, **values: Any) -> None:
        if not self._logger.isEnabledFor(level):
            return
        exc_info = values.pop("exc_info", None)
        text = str(event) % args if args else str(event)
        pairs = {**self._context, **values}
        if pairs:
            text += " " + " ".join(f"{k}={v!r}" for k, v in pairs.items())
        self._logger.log(level, "%s", text, exc_info=exc_info, stacklevel=3)

    def debug(self, event: object, *args: Any, **values: Any) -> None:
        self._log(logging.DEBUG, event, *args, **values)

    def info(self, event: object, *args: Any, **values: Any) -> None:
        self._log(logging.INFO, event, *args, **values)

    def warning(self, event: object, *args: Any, **values: Any) -> None:
        self._log(logging.WARNING, event, *args, **values)

    warn = warning

    def error(self, event: object, *args: Any, **values: Any) -> None:
        self._log(logging.ERROR, event, *args, **values)

    def critical(self, event: object, *args: Any, **values: Any) -> None:
        self._log(logging.CRITICAL, event, *args, **values)

    def exception(self, event: object, *args: Any, **values: Any) -> None:
        values.setdefault("exc_info", True)
        self._log(logging.ERROR, event, *args, **values)


def get_logger(name: str = "flowdapt", **values: Any) -> BoundLogger:
    """The structlog-style logger called ``name``."""
    return BoundLogger(logging.getLogger(name), values)


__all__ = ["BoundLogger", "get_logger"]
