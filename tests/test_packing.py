"""Packing calls for Ray and Dask (executors/packing.py): what arrives in a fresh worker
process is the call that was packed, whichever pickler packed it."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import types
import uuid
from pathlib import Path
from typing import Any

import pytest

from flowstage.core.calls import StageTask, run_call
from flowstage.core.context import ConfigView, RunContext, RunInfo
from flowstage.core.loading import load_workflow
from flowstage.core.runs import now
from flowstage.executors import packing
from flowstage.executors.packing import pack_call, unpack_call

TESTS = Path(__file__).parent


class Handle:
    """An engine handle, as the packer sees it: the engine passes ``value`` itself."""

    def __init__(self, value: Any) -> None:
        self.value = value


def handle_value(argument: Any) -> Any:
    return argument.value if isinstance(argument, Handle) else None


def task_of(
    stage: str, target: Any, definition_target: Any = "teststages.basic.double"
) -> StageTask:
    definition = load_workflow(
        {
            "metadata": {"name": "packed"},
            "spec": {"stages": [{"name": "s", "target": definition_target}]},
        }
    )
    context = RunContext(
        {},
        ConfigView({}, {}),
        "default",
        "ray",
        definition,
        RunInfo(uuid.uuid4().hex, "packed", "api", now()),
    )
    return StageTask(stage, target, (), context)


def in_fresh_process(packed: bytes, engine_values: list[Any], tmp_path: Path, show: str) -> str:
    """``show`` (an expression of ``fn`` and ``args``) for the call unpacked in a new
    interpreter, which has none of this test's modules or classes."""
    (tmp_path / "call.bin").write_bytes(packed)
    code = (
        "import pickle, sys\n"
        "from flowstage.executors.packing import unpack_call\n"
        f"fn, args = unpack_call(open(sys.argv[1], 'rb').read(), tuple({engine_values!r}))\n"
        f"print({show})\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "call.bin")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_chain_stage_call_arrives_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class NotNeeded(packing._CallPickler):
        def __init__(self, *args: Any) -> None:
            raise AssertionError("built-in data and a stage task need no cloudpickle")

    monkeypatch.setattr(packing, "_CallPickler", NotNeeded)
    task = task_of("s", "teststages.basic.double")
    packed, engine_values = pack_call(run_call, (task, {}, Handle(21)), handle_value, ("ray",))
    assert engine_values == [21]
    fn, args = unpack_call(packed, (21,))
    assert fn is run_call and args[0] == task and args[1:] == ({}, 21)
    assert in_fresh_process(packed, [21], tmp_path, "fn(*args)") == "42"


def test_a_script_class_in_the_input_travels_by_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A class of the user's script (``__main__``) is not in the worker: the standard
    pickler would name it, cloudpickle sends it."""
    main = types.ModuleType("__main__")
    monkeypatch.setitem(sys.modules, "__main__", main)
    city = type(
        "City",
        (),
        {"__module__": "__main__", "__init__": lambda self, name: setattr(self, "name", name)},
    )
    main.City = city
    task = task_of("s", "teststages.basic.double")
    packed, _ = pack_call(run_call, (task, {"where": city("Lyon")}), handle_value, ("ray",))
    assert (
        in_fresh_process(
            packed, [], tmp_path, "type(args[1]['where']).__name__, args[1]['where'].name"
        )
        == "City Lyon"
    )


def test_a_target_that_is_not_the_workflows_travels_by_value(tmp_path: Path) -> None:
    task = task_of("s", lambda x: x + 1, definition_target=lambda x: x - 1)
    packed, _ = pack_call(run_call, (task, {}, Handle(1)), handle_value, ("ray",))
    assert in_fresh_process(packed, [1], tmp_path, "fn(*args)") == "2"


def test_a_self_referencing_input_is_packed(tmp_path: Path) -> None:
    looped: list[Any] = [1]
    looped.append(looped)
    task = task_of("s", "teststages.basic.double")
    packed, _ = pack_call(run_call, (task, {"xs": looped}), handle_value, ("ray",))
    assert in_fresh_process(packed, [], tmp_path, "args[1]['xs'][1][1][0]") == "1"


def test_a_call_unpacked_first_gets_the_values_that_follow_it() -> None:
    """What Ray unpickles as a task's first argument (before the upstream values) when
    the run sends its code: the call, its engine arguments put in place later."""
    task = task_of("s", "teststages.basic.double")
    packed, engine_values = pack_call(run_call, (task, {}, Handle(21)), handle_value, ("ray",))
    unpacked = pickle.loads(pickle.dumps(packing.UnpackedFirst(packed, len(engine_values))))
    assert isinstance(unpacked, packing.UnpackedCall) and unpacked.fn is run_call
    args = unpacked.args(tuple(engine_values))
    assert args[0] == task and args[1:] == ({}, 21)
    assert unpacked.fn(*args) == 42
