"""Stages of the examples on Flowdapt's "Stages" page."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def test_stage(n_vals: int) -> list:
    return list(range(n_vals))


def next_stage(rand_array: list) -> int:
    logger.info("Got list from test_stage: %s", rand_array)
    return sum(rand_array)


def parallel_stage_1(values: list) -> list:
    return [v * 2 for v in values]


def parallel_stage_2(values: list) -> list:
    return [v + 100 for v in values]


def funnel_stage(doubled: list, shifted: list) -> dict:
    return {"doubled": doubled, "shifted": shifted}


def greet_city(city: str) -> str:
    return f"hello {city}"
