"""Stages for map tests."""

from __future__ import annotations

from flowstage import get_run_context


def city_list() -> list[dict]:
    return [{"city": c} for c in ("oslo", "lima", "riga")]


def as_dict() -> dict:
    return {"a": 1, "b": 2}


def as_tuple() -> tuple:
    return (3, 4)


def not_iterable() -> int:
    return 42


def key_value(pair: tuple) -> str:
    key, value = pair
    return f"{key}={value}"


def fetch(city: dict) -> str:
    return city["city"].upper()


def scale(x: int, factor: int) -> int:
    return x * factor


def factor() -> int:
    return 3


def greet(city: str, greeting: str = "hello", punctuation: str = "!") -> str:
    return f"{greeting} {city}{punctuation}"


def with_rest(item: int, base: int) -> int:
    return item + base


def squares_gen(x: int):
    yield x
    yield x * x


def identity(x: object) -> object:
    return x


def item_and_stage(x: object) -> tuple:
    ctx = get_run_context()
    return (ctx.stage, ctx.item_index, x)
