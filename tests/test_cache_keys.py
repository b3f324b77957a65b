"""What enters a stage's cache key beyond its source: default values and closed-over
variables of its code, module constants and arguments that are sets, digested the same
way in every process (whatever its ``PYTHONHASHSEED``)."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowstage import run_workflow
from teststages.caching import calls


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    folder = tmp_path / "marks"
    folder.mkdir()
    return folder


MODULE = """
import uuid
from pathlib import Path

LIMIT = {limit}


def _times(k):
    def times(marks, n, limit=LIMIT):
        (Path(marks) / f"stage.{{uuid.uuid4().hex}}").touch()
        return min(n * k, limit)

    return times


stage = _times({k})
"""


def flowstage_run(tmp_path: Path, module_text: str, run_input: dict[str, Any]) -> str:
    """Write ``stage_module.py`` and run its ``stage`` (cached) with the CLI in a new
    process, as a user who edited the module would; its output."""
    module = f"stage_module_{tmp_path.name[-8:]}".replace("-", "_")
    (tmp_path / f"{module}.py").write_text(module_text)
    path = tmp_path / "cached.yaml"
    document = {
        "kind": "workflow",
        "metadata": {"name": "cached"},
        "spec": {"stages": [{"name": "s", "target": f"{module}.stage", "cache": True}]},
    }
    path.write_text(yaml.safe_dump(document))
    flags = [f"--{key}={value}" for key, value in run_input.items()]
    done = subprocess.run(
        [sys.executable, "-m", "flowstage", "run", str(path), "-q", *flags],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},  # a same-size edit in the same second
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_editing_a_default_value_or_a_closed_over_value_misses(tmp_path, marks):
    def run(limit: int, k: int) -> int:
        text = MODULE.format(limit=limit, k=k)
        return int(flowstage_run(tmp_path, text, {"marks": marks, "n": 5}))

    assert run(limit=10, k=3) == 10
    assert run(limit=10, k=3) == 10 and calls(marks, "stage") == 1
    assert run(limit=99, k=3) == 15 and calls(marks, "stage") == 2  # LIMIT, a default
    assert run(limit=99, k=5) == 25 and calls(marks, "stage") == 3  # make(5), a closure


def test_a_closed_over_value_that_cannot_be_digested_names_the_variable(tmp_path, marks):
    def _holding(lock: Any) -> Any:
        def held(n: int) -> bool:
            return lock.locked() or n > 0

        return held

    document = {
        "kind": "workflow",
        "metadata": {"name": "held"},
        "spec": {"stages": [{"name": "held", "target": _holding(threading.Lock()), "cache": True}]},
    }
    run = run_workflow(document, {"n": 1}, return_run=True)
    assert run.state == "failed"
    assert (
        "stage 'held': cannot compute its cache key: its code: closure lock (a lock)" in run.error
    )
    assert "leave 'code' out of its `cache.key`" in run.error


SET_MODULE = """
CITIES = frozenset({"oslo", "lima", "pune", "rome", "kyiv", "oaxaca", "nara", "bergen"})
LEVELS = {("low", 1), ("mid", 2), ("high", 3), ("peak", 4)}


def stage(city, minimum=frozenset({"a", "b", "c", "d", "e", "f"})):
    return city in CITIES and len(LEVELS) > len(minimum)
"""


def test_module_sets_digest_the_same_in_every_process(tmp_path):
    """A set's repr follows the process's string hashing: the digest must not."""
    (tmp_path / "set_module.py").write_text(SET_MODULE)
    script = (
        "import set_module; from flowstage.core.code_digest import code_digest; "
        "print(code_digest(set_module.stage).hex())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3", "4")
    }
    assert len(digests) == 1, digests


def test_argument_digests_without_a_json_form_do_not_change_between_processes():
    """A dict holding a date (no JSON form) and a set of strings: pickled whole, the
    set's order would follow each process's string hashing."""
    script = (
        "import datetime; from flowstage.core.value_digest import value_digest; "
        "print(value_digest({'day': datetime.date(2026, 12, 4), "
        "'cities': {'oslo', 'lima', 'pune', 'rome', 'kyiv', 'nara'}}).hex())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3", "4")
    }
    assert len(digests) == 1, digests


def test_argument_digests_ignore_insertion_order_and_sharing():
    from flowstage.core.value_digest import value_digest

    day = datetime.date(2026, 12, 4)
    assert value_digest({"a": day, "b": 1}) == value_digest({"b": 1, "a": day})
    shared = [day, day]
    equal = [day, datetime.date(2026, 12, 4)]
    assert value_digest(shared) == value_digest(equal)
    assert value_digest([day, {1, 2}]) != value_digest([day, {1, 3}])
    assert value_digest((day, 1)) != value_digest((day, 1.5))
