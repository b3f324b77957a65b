"""Pieces the built-in executors share: options of cluster engines, the check that a
result can leave its worker, and starting worker processes without the user's script."""

from __future__ import annotations

import contextlib
import pickle
import sys
import types
from collections.abc import Iterator
from typing import Any

from pydantic import Field, field_validator

from flowstage.core.calls import CallFailure
from flowstage.core.errors import ResultNotTransferable
from flowstage.core.executor import ExecutorOptions
from flowstage.core.units import parse_duration, parse_memory


class ClusterOptions(ExecutorOptions):
    """Options every cluster executor (Dask, Ray) takes."""

    address: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    dashboard: bool = False
    connect_timeout: float = Field(default=10.0, gt=0)
    #: with ``address:``, send the workflow folder's and ``user_modules``' Python files
    #: to the workers with each run (they may be on hosts without those folders)
    upload_code: bool = True

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
        return value

    @field_validator("connect_timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


def parse_capacity(value: Any) -> Any:
    """A ``resources:`` capacity option, with ``memory`` given as ``8GB`` or bytes."""
    if isinstance(value, dict) and "memory" in value:
        value = {**value, "memory": parse_memory(value["memory"])}
    return value


def unpicklable(value: Any) -> Exception | None:
    """Why ``value`` cannot be pickled (plain pickle, then cloudpickle), or None.

    Protocol 5 with a buffer callback keeps large array buffers out of the pickle, so
    the check costs little for numeric data.
    """
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return None

    buffers: list[Any] = []
    try:
        pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
        return None
    except Exception:  # noqa: BLE001 - any object may refuse pickling its own way; try cloudpickle
        buffers.clear()
    # lazy: cloudpickle is needed only for what plain pickle refuses
    import cloudpickle

    try:
        cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
        return None
    except Exception as exc:  # noqa: BLE001 - whatever stops cloudpickle is the reason the result cannot travel
        return exc


def not_transferable(
    label: str, value: Any, problem: Exception, item_index: int | None = None
) -> CallFailure:
    """The failure of a call (or map item) whose result ``value`` cannot leave its worker."""
    msg = (
        f"its result ({type(value).__name__}) cannot be serialized to leave the worker: "
        f"{type(problem).__name__}: {problem}"
    )
    return CallFailure(label, item_index, 1, "", ResultNotTransferable(msg))


def batch_not_transferable(label: str, start: int, value: Any, problem: Exception) -> CallFailure:
    """:func:`not_transferable` for a batch of map items from ``start`` (its result is
    ``(values, ...)``), naming the first item whose value is the reason."""
    values = value[0] if isinstance(value, tuple) and value else []
    for offset, item in enumerate(values):
        item_problem = unpicklable(item)
        if item_problem is not None:
            return not_transferable(label, item, item_problem, start + offset)
    return not_transferable(label, value, problem)


@contextlib.contextmanager
def main_module_hidden() -> Iterator[None]:
    """Spawned worker processes would re-run the user's script (``__main__``) on start;
    show them an empty main module instead (calls arrive by value anyway)."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main
