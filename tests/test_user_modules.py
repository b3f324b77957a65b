"""``<app_dir>/user_modules/*.py`` import as ``user_modules.<name>`` in the driver and in
every worker process, as Flowdapt's ``user_modules.testing_stuff.test_stage`` does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

STAGE_MODULE = """
import os
import threading

from user_modules import {helper} as helper


def test_stage(n_vals: int) -> dict:
    return {{"pid": os.getpid(), "parent": os.getppid(), "thread": threading.current_thread().name,
            "file": __file__, "values": helper.numbers(n_vals)}}


def next_stage(found: dict) -> int:
    return sum(found["values"])
"""

HELPER_MODULE = """
def numbers(count):
    return list(range(count))
"""

WORKFLOW = """
kind: workflow
metadata: {{name: user_modules_check}}
spec:
  stages:
    - name: test_stage
      target: user_modules.{module}.test_stage
"""


def write_user_modules(home: Path, module: str, helper: str) -> Path:
    folder = home / "user_modules"
    folder.mkdir(exist_ok=True)
    (folder / f"{helper}.py").write_text(textwrap.dedent(HELPER_MODULE), encoding="utf-8")
    path = folder / f"{module}.py"
    path.write_text(textwrap.dedent(STAGE_MODULE.format(helper=helper)), encoding="utf-8")
    return path


def test_flowdapt_target_runs_on_worker_processes_from_the_cli(
    app_home: Path, tmp_path: Path
) -> None:
    """The exact target of Flowdapt's docs, in a fresh driver and fresh worker processes."""
    module_file = write_user_modules(app_home, "testing_stuff", "helpers")
    elsewhere = tmp_path / "workflows"  # not next to user_modules: only the app dir provides it
    elsewhere.mkdir()
    workflow = elsewhere / "test.yaml"
    workflow.write_text(WORKFLOW.format(module="testing_stuff"), encoding="utf-8")

    validate = subprocess.run(
        [sys.executable, "-m", "flowstage.cli", "validate", str(workflow), "--n_vals", "3"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert validate.returncode == 0, validate.stderr  # imported by the driver

    command = [
        sys.executable,
        "-m",
        "flowstage.cli",
        "run",
        str(workflow),
        "--n_vals",
        "4",
        "-q",
        "--format",
        "json",
        "--executor",
        "local",
        "-o",
        "processes=true",
        "-o",
        "max_workers=1",
    ]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as driver:
        out, err = driver.communicate(timeout=120)
    assert driver.returncode == 0, err
    found = json.loads(out)
    assert found["values"] == [0, 1, 2, 3]
    assert Path(found["file"]) == module_file
    assert found["parent"] == driver.pid  # a worker process the driver started
    assert found["pid"] != driver.pid


def test_user_modules_import_in_the_driver(app_home: Path) -> None:
    from flowstage import run_workflow

    module = f"um_{uuid.uuid4().hex[:8]}"
    module_file = write_user_modules(app_home, module, f"{module}_helpers")
    found = run_workflow(
        WORKFLOW.format(module=module), {"n_vals": 3}, executor="local", record=False
    )
    assert found["pid"] == os.getpid()
    assert Path(found["file"]) == module_file
    imported = sys.modules[f"user_modules.{module}"]
    assert Path(imported.__file__) == module_file


_ENGINE_NAMES = {"threads": "local", "processes": "local", "dask": "dask", "ray": "ray"}


@pytest.fixture
def engine_registered(request: pytest.FixtureRequest) -> None:
    """Skip engines whose executor plugin is not there (before ``executor`` starts one)."""
    from flowstage.core.plugin_manager import default_plugins

    engine = request.node.callspec.params["executor"]
    name = _ENGINE_NAMES[engine]
    if default_plugins().registries.executors.get_or_none(name) is None:
        pytest.skip(f"no {name!r} executor is installed")


def test_user_modules_import_on_every_engine(
    app_home: Path, engine_registered: None, executor
) -> None:
    from flowstage import run_workflow

    module = f"um_{uuid.uuid4().hex[:8]}"
    write_user_modules(app_home, module, f"{module}_helpers")
    text = WORKFLOW.format(module=module) + textwrap.indent(
        textwrap.dedent(f"""\
        - name: next_stage
          target: user_modules.{module}.next_stage
          depends_on: [test_stage]
        """),
        "    ",
    )
    run = run_workflow(text, {"n_vals": 5}, executor=executor, record=False, return_run=True)
    assert run.state == "finished", run.error
    assert run.result == 10
