"""The API reference is generated from docstrings: every public name it shows has one."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

import flowstage
import flowstage.artifacts
from flowstage.core import errors, hookspecs


def _public_members(obj: Any) -> list[tuple[str, Any]]:
    """A class's own public methods and properties (what the reference lists under it)."""
    found = []
    for name, member in vars(obj).items():
        if name.startswith("_"):
            continue
        if inspect.isfunction(member) or isinstance(member, (property, classmethod, staticmethod)):
            found.append((name, member))
    return found


def _documented_names() -> list[tuple[str, Any]]:
    names: list[tuple[str, Any]] = []
    for module in (flowstage, flowstage.artifacts, errors):
        for name in module.__all__:
            value = getattr(module, name)
            names.append((f"{module.__name__}.{name}", value))
            if inspect.isclass(value) and value.__module__.startswith("flowstage"):
                for member_name, member in _public_members(value):
                    names.append((f"{module.__name__}.{name}.{member_name}", member))
    for name, value in vars(hookspecs).items():
        if name.startswith("flowstage_"):
            names.append((f"hookspecs.{name}", value))
    return names


@pytest.mark.parametrize(
    ("name", "value"), [pytest.param(n, v, id=n) for n, v in _documented_names()]
)
def test_public_name_has_a_docstring(name: str, value: Any) -> None:
    target = value.fget if isinstance(value, property) else value
    target = getattr(target, "__func__", target)
    doc = inspect.getdoc(target)
    assert doc and doc.strip(), f"{name} has no docstring; the API reference would show none"
