"""Stages that return their run input, to see what a CLI value arrives as."""

from __future__ import annotations

from typing import Any


def echo(n: Any = None, **others: Any) -> dict[str, Any]:
    return {"n": n, **others}


def unannotated(n):  # type: ignore[no-untyped-def]  # no annotation on purpose
    return n


def texts(code: str, count: int = 0, ratio: float = 0.0, flag: bool = False) -> dict[str, Any]:
    return {"code": code, "count": count, "ratio": ratio, "flag": flag}


def optional_text(code: str | None) -> str | None:
    return code


def listed(codes: list[str]) -> list[str]:
    return codes
