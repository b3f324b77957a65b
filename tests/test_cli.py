"""The command line, as a user runs it: a real ``flowstage`` process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import interruptible
from flowstage.core.inputs import parse_input_args

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
FLOWSTAGE = str(Path(sys.executable).with_name("flowstage"))


def cli(*args: str, cwd: Path = EXAMPLES, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLOWSTAGE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def test_run_seed_workflow_coerces_cli_input() -> None:
    done = cli("run", "test_workflow.yaml", "--n_vals", "5")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "10"


@pytest.mark.parametrize("fmt", ["json", "yaml", "table", "raw"])
def test_run_formats(fmt: str) -> None:
    done = cli("run", "parallel_branches.yaml", "--n_vals", "3", "--format", fmt, "-q")
    assert done.returncode == 0, done.stderr
    expected = {"doubled": [0, 2, 4], "shifted": [100, 101, 102]}
    if fmt == "json":
        assert json.loads(done.stdout) == expected
    elif fmt == "yaml":
        assert yaml.safe_load(done.stdout) == expected
    elif fmt == "raw":
        assert done.stdout.strip() == repr(expected)
    else:
        assert "doubled" in done.stdout and "[100, 101, 102]" in done.stdout


def test_run_cities_pipeline_with_file_config_and_progress() -> None:
    done = cli("run", "cities/build_features.yaml", "--format", "json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["study"] == "nowcast-demo"
    assert result["cities"] == 40
    assert "stage fetch_city_data finished (40/40 items" in done.stderr


def test_run_map_on_list_input() -> None:
    done = cli(
        "run",
        "map_on_payload.yaml",
        "--payload_cities[]",
        "Oslo",
        "--payload_cities[]",
        "Lima",
        "--format",
        "json",
        "-q",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["hello Oslo", "hello Lima"]


def test_run_on_processes_from_flags() -> None:
    done = cli(
        "run",
        "test_workflow.yaml",
        "--n_vals",
        "4",
        "--executor",
        "local",
        "--executor-option",
        "processes=true",
        "-o",
        "max_workers=2",
        "-q",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "6"


def test_input_file(tmp_path: Path) -> None:
    (tmp_path / "in.json").write_text(json.dumps({"n_vals": 3}))
    done = cli("run", "test_workflow.yaml", "--input-file", str(tmp_path / "in.json"), "-q")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3"


def test_failed_run_exits_1_with_worker_traceback(tmp_path: Path) -> None:
    path = tmp_path / "fail.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "kind": "workflow",
                "metadata": {"name": "fail"},
                "spec": {"stages": [{"name": "bad", "target": "teststages.basic.fails"}]},
            }
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    done = subprocess.run(
        [FLOWSTAGE, "run", str(path), "-q"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 1
    assert "stage 'bad' failed: ValueError: this stage always fails" in done.stderr
    assert "teststages/basic.py" in done.stderr  # the worker's traceback
    assert "flowstage/core" not in done.stderr.split("(from the worker):")[0]


def test_partial_failures_are_listed_and_exit_0(tmp_path: Path) -> None:
    path = tmp_path / "partial.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "kind": "workflow",
                "metadata": {"name": "partial"},
                "spec": {
                    "stages": [
                        {
                            "name": "m",
                            "target": "teststages.basic.fail_on_two",
                            "type": "parameterized",
                            "map_on": "xs",
                            "allow_partial_failure": True,
                        }
                    ]
                },
            }
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    done = subprocess.run(
        [FLOWSTAGE, "run", str(path), "--xs[]", "1", "--xs[]", "2", "--format", "json", "-q"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [1]
    assert "stage 'm': 1 item(s) failed" in done.stderr
    assert "item 1: ValueError: bad item 2" in done.stderr


def test_bad_workflow_exits_2_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "kind: workflow\nmetadata: {name: bad}\nspec:\n  stages:\n"
        "    - {name: a, target: teststages.basic.one, depend_on: [b]}\n"
    )
    done = cli("run", str(path))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert f"{path}: stage 'a': unknown key 'depend_on' (did you mean 'depends_on'?)" in done.stderr


def test_unknown_executor_exits_2_listing_installed() -> None:
    done = cli("run", "test_workflow.yaml", "--n_vals", "1", "--executor", "dsak")
    assert done.returncode == 2
    assert "unknown executor 'dsak' (installed:" in done.stderr
    assert "local" in done.stderr


def test_unknown_workflow_name_exits_2() -> None:
    done = cli("run", "no_such_workflow")
    assert done.returncode == 2
    assert "no_such_workflow" in done.stderr


def test_validate_and_validate_with_input() -> None:
    done = cli("validate", "test_workflow.yaml")
    assert done.returncode == 0 and "is valid" in done.stdout
    done = cli("validate", "test_workflow.yaml", "--n_vals", "five")
    assert done.returncode == 2
    assert "input 'n_vals': expected int" in done.stderr


@pytest.mark.parametrize(
    "fmt,expected",
    [
        ("text", "funnel_stage  <- parallel_stage_1, parallel_stage_2"),
        ("mermaid", "flowchart TD"),
        ("dot", '"parallel_stage_1" -> "funnel_stage";'),
    ],
)
def test_graph(fmt: str, expected: str) -> None:
    done = cli("graph", "parallel_branches.yaml", "--format", fmt)
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout


def test_help_does_not_import_engines() -> None:
    code = (
        "import sys\nfrom flowstage.cli.main import run_cli\n"
        "try:\n    run_cli(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('dask', 'distributed', 'ray') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_ctrl_c_stops_workers_and_exits_130(tmp_path: Path) -> None:
    path = tmp_path / "slow.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "kind": "workflow",
                "metadata": {"name": "slow"},
                "spec": {"stages": [{"name": "hang", "target": "teststages.timing.hang"}]},
            }
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    proc = subprocess.Popen(
        interruptible(
            [
                FLOWSTAGE,
                "run",
                str(path),
                "-o",
                "processes=true",
                "-o",
                "max_workers=1",
                "-e",
                "local",
            ]
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    time.sleep(3)  # the pool is up and the stage is running
    children = _children(proc.pid)
    assert children, "the process pool did not start"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    time.sleep(0.5)
    assert not [pid for pid in children if _alive(pid)], "worker processes were left behind"


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_input_parsing_like_flowctl() -> None:
    assert parse_input_args(
        [
            "--n_vals",
            "5",
            "--ratio",
            "0.5",
            "--name",
            "oslo",
            "--flag",
            "--none",
            "null",
            "--a.b",
            "1",
            "--a.c",
            "true",
            "--l[]",
            "x",
            "--l[]",
            "2",
            "--k=v",
        ]
    ) == {
        "n_vals": 5,
        "ratio": 0.5,
        "name": "oslo",
        "flag": True,
        "none": None,
        "a": {"b": 1, "c": True},
        "l": ["x", 2],
        "k": "v",
    }
