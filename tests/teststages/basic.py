"""Stage functions used by the behaviour suite (importable as ``teststages.basic``)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from flowstage import get_run_context


def numbers(n_vals: int) -> list[int]:
    return list(range(n_vals))


def total(values: list[int]) -> int:
    return sum(values)


def double(x: int) -> int:
    return x * 2


def add(x: int, y: int) -> int:
    return x + y


def add_offset(x: int, offset: int) -> int:
    return x + offset


def concat(a: list, b: list) -> list:
    return list(a) + list(b)


def one() -> int:
    return 1


def fails(*_args: object) -> None:
    raise ValueError("this stage always fails")


def fail_on_two(x: int) -> int:
    if x == 2:
        raise ValueError(f"bad item {x}")
    return x


async def async_double(x: int) -> int:
    await asyncio.sleep(0.001)
    return x * 2


async def async_numbers(n_vals: int) -> list[int]:
    await asyncio.sleep(0.001)
    return list(range(n_vals))


def count_up(n_vals: int):
    yield from range(n_vals)


def context_summary() -> dict:
    ctx = get_run_context()
    return {
        "stage": ctx.stage,
        "item_index": ctx.item_index,
        "input": dict(ctx.input),
        "namespace": ctx.namespace,
        "executor": ctx.executor,
        "workflow": ctx.definition.metadata.name,
        "run_id": ctx.run.id,
        "config_input": dict(ctx.config.input),
        "definition": ctx.definition.model_dump(),
        "source": ctx.definition.source,
    }


def helper_reads_context() -> str:
    return get_run_context().stage


def calls_helper() -> str:
    return helper_reads_context()


def item_index(x: object) -> int:
    return get_run_context().item_index


def sleep_then(x: float) -> float:
    time.sleep(x)
    return x


def flaky(marker_dir: str, succeed_on: int = 3) -> int:
    """Fails until called ``succeed_on`` times (counted with files, across processes)."""
    folder = Path(marker_dir)
    folder.mkdir(parents=True, exist_ok=True)
    attempt = len(list(folder.iterdir())) + 1
    (folder / f"{attempt}-{os.getpid()}-{time.time_ns()}").touch()
    if attempt < succeed_on:
        raise RuntimeError(f"attempt {attempt} fails")
    return attempt


def mark(marker: str) -> str:
    Path(marker).write_text("ran")
    return marker
