"""``flowstage plugins new NAME``: a plugin package that passes its own test at once."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from flowstage.core.errors import UserError

_PYPROJECT = """[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "flowstage-{name}"
version = "0.1.0"
description = "flowstage stages and workflows: {name}"
requires-python = ">=3.10"
dependencies = ["flowstage"]

[project.optional-dependencies]
test = ["pytest"]

[project.entry-points."flowstage.plugins"]
{name} = "{package}.plugin"

[tool.setuptools.packages.find]
where = ["src"]

[tool.setuptools.package-data]
{package} = ["workflows/*.yaml"]
"""

_STAGES = '''"""Stages of {name}: plain functions, named in workflows by their import string."""

from flowstage import get_run_context


def make_numbers(count: int) -> list[int]:
    """Root stage: gets ``count`` from the run input."""
    return list(range(count))


def square(number: int) -> int:
    """Parameterized stage: called once per item of ``make_numbers``'s output."""
    return number * get_run_context().config.get("power_base", number)


def total(squares: list[int]) -> int:
    return sum(squares)
'''

_PLUGIN = '''"""The flowstage plugin of {name}: ships its workflows."""

from pathlib import Path

from flowstage import hookimpl


@hookimpl
def flowstage_workflow_paths() -> list[str]:
    return sorted(str(p) for p in (Path(__file__).parent / "workflows").glob("*.yaml"))
'''

_WORKFLOW = """kind: workflow
metadata:
  name: {name}_squares
  annotations: {{group: {name}}}
spec:
  stages:
    - name: make_numbers
      target: {package}.stages.make_numbers
    - name: square
      target: {package}.stages.square
      type: parameterized
      depends_on: [make_numbers]
    - name: total
      target: {package}.stages.total
      depends_on: [square]
"""

_TEST = """import subprocess
import sys

from flowstage import run_workflow


def test_squares_workflow_runs():
    assert run_workflow("{name}_squares", {{"count": 4}}, record=False) == 0 + 1 + 4 + 9


def test_squares_workflow_runs_from_the_cli():
    done = subprocess.run(
        [sys.executable, "-m", "flowstage", "run", "{name}_squares", "--count", "4", "--quiet"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "14"
"""

_CONFTEST = '''"""Each test gets an app directory of its own, so that your settings (a default
executor, disabled plugins) and run history stay out of the tests."""

import os

import pytest


@pytest.fixture(autouse=True)
def flowstage_home(tmp_path, monkeypatch):
    home = tmp_path / "flowstage-home"
    monkeypatch.setenv("FLOWSTAGE_HOME", str(home))
    for key in list(os.environ):
        if key.startswith("FLOWSTAGE__"):
            monkeypatch.delenv(key)
    return home
'''


#: plugin names are at most this long (distribution, package and file names derive from them)
MAX_NAME = 64


def new(
    name: str = typer.Argument(..., help="Plugin name (letters, digits, underscores)."),
    directory: Path = typer.Option(Path("."), "--dir", help="Where to create flowstage-NAME/."),
) -> None:
    """Scaffold a plugin package: stages, a shipped workflow and a test."""
    if len(name) > MAX_NAME:  # it names folders and files, which have a length limit
        msg = (
            f"plugin name {name[:20]!r}...: expected at most {MAX_NAME} characters, got {len(name)}"
        )
        raise UserError(msg)
    if not re.fullmatch(r"[a-zA-Z][a-zA-Z0-9_]*", name):
        raise UserError(
            f"plugin name {name!r}: expected letters, digits and underscores, "
            "starting with a letter"
        )
    package = f"flowstage_{name.lower()}"
    root = directory / f"flowstage-{name.lower().replace('_', '-')}"
    if root.exists():
        raise UserError(f"{root} already exists; choose another name or --dir")
    values = {"name": name.lower(), "package": package}
    files = {
        root / "pyproject.toml": _PYPROJECT,
        root / "src" / package / "__init__.py": '"""flowstage plugin {name}."""\n',
        root / "src" / package / "stages.py": _STAGES,
        root / "src" / package / "plugin.py": _PLUGIN,
        root / "src" / package / "workflows" / f"{name.lower()}_squares.yaml": _WORKFLOW,
        root / "tests" / "conftest.py": _CONFTEST,
        root / "tests" / "test_workflow.py": _TEST,
    }
    for path, template in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**values), encoding="utf-8")
    typer.echo(f"created {root}: pip install -e '{root}[test]' && pytest {root / 'tests'}")
