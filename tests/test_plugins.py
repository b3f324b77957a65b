"""The plugin system, against real installed distributions.

``tests/sample_plugin`` (flowstage-sample) is pip-installed into this interpreter's
environment once per session (skipped when the installed copy already matches the
source). ``tests/broken_plugin`` (flowstage-broken) is pip-installed into a session
directory with ``--target`` and put on ``PYTHONPATH`` only where a test wants it: its
warnings would otherwise show in every other ``flowstage`` command run from this
environment. Nothing patches ``importlib.metadata``: discovery reads what pip wrote.

Most tests drive the real CLI in a subprocess (``python -m flowstage.cli``); the rest call
``run_workflow`` with a plugin manager built after the install.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
import subprocess
import sys
import sysconfig
import textwrap
import threading
from pathlib import Path

import pytest

from installs import BROKEN, HERE, pip_install

SAMPLE_HOOKS = [
    "flowstage_event_published",
    "flowstage_register_commands",
    "flowstage_register_executors",
    "flowstage_register_stage_types",
    "flowstage_run_finished",
    "flowstage_run_started",
    "flowstage_stage_finished",
    "flowstage_stage_started",
    "flowstage_workflow_paths",
]


# -- installing the sample distributions (see installs.py; sample_installed in conftest)


@pytest.fixture(scope="session")
def broken_site(tmp_path_factory: pytest.TempPathFactory, sample_installed: None) -> Path:
    """A folder holding an installed flowstage-broken; on ``PYTHONPATH`` it is found."""
    target = tmp_path_factory.mktemp("broken_site")
    pip_install("--target", str(target), str(BROKEN))
    return target


# -- running things ------------------------------------------------------------------


def flowstage(
    *args: str,
    env: dict[str, str] | None = None,
    extra_path: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """The real ``flowstage`` command in a subprocess (FLOWSTAGE_HOME is the test's)."""
    environ = {**os.environ, "COLUMNS": "250", **(env or {})}
    if extra_path is not None:
        environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(extra_path), environ.get("PYTHONPATH")])
        )
    return subprocess.run(
        [sys.executable, "-m", "flowstage.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        env=environ,
        timeout=timeout,
    )


def plugin_rows(
    *, env: dict[str, str] | None = None, extra_path: Path | None = None
) -> dict[str, dict]:
    done = flowstage("plugins", "--format", "json", env=env, extra_path=extra_path)
    assert done.returncode == 0, done.stderr
    return {row["name"]: row for row in json.loads(done.stdout)}


@pytest.fixture
def plugins(sample_installed: None):
    """A plugin manager built now (after the installs), used by ``run_workflow``."""
    from flowstage.core.plugin_manager import get_plugin_manager, set_default_plugins

    manager = get_plugin_manager()
    set_default_plugins(manager)
    yield manager
    set_default_plugins(None)


def write_settings(home: Path, text: str) -> None:
    (home / "settings.yaml").write_text(textwrap.dedent(text), encoding="utf-8")


BATCHED = """
kind: workflow
metadata: {{name: batched_sizes}}
spec:
  stages:
    - name: make_numbers
      target: flowstage_sample.stages.make_numbers
    - name: sizes
      target: flowstage_sample.stages.{target}
      type: batched
      depends_on: [make_numbers]
      options: {options}
"""


# -- flowstage plugins ----------------------------------------------------------------


def test_plugins_json_shows_loaded_failed_and_disabled(app_home: Path, broken_site: Path) -> None:
    write_settings(app_home, "plugins: {disabled: [bad_args]}\n")
    rows = plugin_rows(extra_path=broken_site)

    sample = rows["sample"]
    assert sample["distribution"] == "flowstage-sample"
    assert sample["version"] == "0.1.0"
    assert sample["value"] == "flowstage_sample.plugin"
    assert sample["status"] == "loaded"
    assert sample["error"] is None
    assert sample["hooks"] == SAMPLE_HOOKS

    exploding = rows["exploding"]
    assert (exploding["distribution"], exploding["version"], exploding["status"]) == (
        "flowstage-broken",
        "0.2.0",
        "failed",
    )
    assert (
        exploding["error"]
        == "ModuleNotFoundError: No module named 'flowstage_engine_that_is_not_installed'"
    )
    assert exploding["hooks"] == []

    assert rows["typo"]["status"] == "failed"
    assert (
        "unknown hook 'flowstage_run_stared' (did you mean 'flowstage_run_started'?)"
        in rows["typo"]["error"]
    )

    assert rows["prefix_typo"]["status"] == "failed"
    assert (
        "unknown hook 'flowstag_stage_finished' (did you mean 'flowstage_stage_finished'?)"
        in rows["prefix_typo"]["error"]
    )

    assert rows["bad_args"]["status"] == "disabled"
    assert rows["bad_args"]["error"] is None

    assert rows["local"]["distribution"] == "flowstage"
    assert rows["local"]["hooks"] == ["flowstage_register_executors"]


def test_plugins_table_and_debug_traceback(app_home: Path, broken_site: Path) -> None:
    done = flowstage("--debug", "plugins", extra_path=broken_site)
    assert done.returncode == 0, done.stderr
    table = done.stdout
    for word in (
        "name",
        "distribution",
        "version",
        "status",
        "hooks",
        "flowstage-sample",
        "loaded",
        "failed",
        "register_executors",
        "No module named 'flowstage_engine_that_is_not_installed'",
    ):
        assert word in table
    # --debug adds the traceback of a plugin that failed to import
    assert "Traceback" in done.stderr
    assert "flowstage_broken/exploding.py" in done.stderr


def test_broken_plugins_warn_and_the_rest_works(app_home: Path, broken_site: Path) -> None:
    done = flowstage("run", "sample_squares", "--count", "4", "-q", extra_path=broken_site)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "14"
    warnings = done.stderr
    # entry point, distribution and error for each broken plugin, no traceback
    assert re.search(
        r"plugin 'exploding' \(distribution flowstage-broken\).*ModuleNotFoundError: "
        r"No module named 'flowstage_engine_that_is_not_installed'",
        warnings,
    )
    assert re.search(
        r"plugin 'typo' \(distribution flowstage-broken\).*unknown hook 'flowstage_run_stared' "
        r"\(did you mean 'flowstage_run_started'\?\)",
        warnings,
    )
    assert re.search(
        r"plugin 'bad_args' \(distribution flowstage-broken\).*'attempt'", warnings, re.DOTALL
    )
    assert "Traceback" not in warnings


def test_selected_executor_that_failed_to_load_stops_with_the_reason(
    app_home: Path, broken_site: Path
) -> None:
    done = flowstage(
        "run", "sample_squares", "--count", "2", "--executor", "exploding", extra_path=broken_site
    )
    assert done.returncode == 2
    assert (
        "error: executor 'exploding' is not available: plugin 'exploding' "
        "(distribution flowstage-broken) failed to load: "
        "ModuleNotFoundError: No module named 'flowstage_engine_that_is_not_installed'"
    ) in done.stderr
    assert done.stdout == ""


def test_unknown_executor_lists_installed_and_unloaded(app_home: Path, broken_site: Path) -> None:
    done = flowstage(
        "run", "sample_squares", "--count", "2", "--executor", "inlien", extra_path=broken_site
    )
    assert done.returncode == 2
    error = done.stderr[done.stderr.index("error: ") :]
    assert re.match(
        r"error: unknown executor 'inlien' \(installed: [^)]*\binline\b[^)]*\blocal\b", error
    )
    assert "plugins that did not load: " in error
    assert "plugin 'exploding' (distribution flowstage-broken) failed to load" in error


def test_unknown_stage_type_names_the_plugins_that_did_not_load(
    app_home: Path, broken_site: Path, tmp_path: Path
) -> None:
    workflow = tmp_path / "typed.yaml"
    workflow.write_text(
        "kind: workflow\nmetadata: {name: typed}\nspec:\n  stages:\n"
        "    - {name: one, target: builtins.len, type: exploded}\n"
    )
    done = flowstage("validate", str(workflow), extra_path=broken_site)
    assert done.returncode == 2
    assert "key 'type': unknown stage type 'exploded'" in done.stderr
    assert "plugins that did not load: " in done.stderr
    assert "plugin 'exploding' (distribution flowstage-broken) failed to load" in done.stderr


def test_plugin_disabled_in_settings_file(app_home: Path, sample_installed: None) -> None:
    write_settings(
        app_home,
        """\
        plugins:
          disabled: [sample]
        """,
    )
    rows = plugin_rows()
    assert rows["sample"]["status"] == "disabled"
    assert rows["sample"]["hooks"] == []
    assert rows["local"]["status"] == "loaded"
    assert "sample-squares" not in flowstage("--help").stdout
    done = flowstage("run", "sample_squares", "--count", "2")
    assert done.returncode == 2
    assert "no workflow file or workflow named 'sample_squares'" in done.stderr
    done = flowstage("executors", "--format", "json")
    assert "inline" not in [row["name"] for row in json.loads(done.stdout)]


def test_plugin_disabled_by_environment_is_never_imported(
    app_home: Path, tmp_path: Path, sample_installed: None
) -> None:
    env = {"FLOWSTAGE__PLUGINS__DISABLED": "sample,exploding"}
    assert plugin_rows(env=env)["sample"]["status"] == "disabled"
    workflow = tmp_path / "numbers.yaml"
    workflow.write_text(
        BATCHED.format(target="", options="").split("    - name: sizes")[0], encoding="utf-8"
    )
    done = flowstage("run", str(workflow), "--count", "2", "--executor", "inline", env=env)
    assert done.returncode == 2
    assert "plugin 'sample' (distribution flowstage-sample) is disabled" in done.stderr
    probe = (
        "import sys; from flowstage.core.plugin_manager import get_plugin_manager; "
        "get_plugin_manager(); print('flowstage_sample.plugin' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )
    assert done.stdout.strip() == "False", done.stderr


def test_duplicate_executor_name_names_both_distributions(
    app_home: Path, sample_installed: None
) -> None:
    env = {"FLOWSTAGE_SAMPLE_DUPLICATE_LOCAL": "1"}
    message = (
        "executor 'local' is registered twice: by flowstage (entry point 'local') and by "
        "flowstage-sample (entry point 'sample')"
    )
    done = flowstage("run", "sample_squares", "--count", "2", "-q", env=env)
    assert done.returncode == 2
    assert f"error: {message}" in done.stderr
    sample = plugin_rows(env=env)["sample"]
    assert sample["status"] == "failed"
    assert message in sample["error"]


def test_duplicate_command_names_both_and_keeps_the_built_in(
    app_home: Path, sample_installed: None
) -> None:
    env = {"FLOWSTAGE_SAMPLE_DUPLICATE_COMMAND": "1"}
    message = (
        "command 'run' is registered twice: by flowstage (entry point 'commands') and by "
        "flowstage-sample (entry point 'sample'); the second is ignored"
    )
    done = flowstage("run", "sample_squares", "--count", "3", "-q", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "5"  # the built-in run, not the plugin's sample-squares
    assert message in done.stderr
    assert message in plugin_rows(env=env)["sample"]["error"]


def test_plugin_raising_in_a_registration_hook_names_plugin_and_hook(
    app_home: Path, sample_installed: None
) -> None:
    env = {"FLOWSTAGE_SAMPLE_RAISE_IN": "flowstage_register_stage_types"}
    message = (
        "flowstage-sample (entry point 'sample') raised in hook flowstage_register_stage_types: "
        "RuntimeError: flowstage-sample was asked to fail in flowstage_register_stage_types "
        "(FLOWSTAGE_SAMPLE_RAISE_IN)"
    )
    rows = plugin_rows(env=env)
    assert rows["sample"]["status"] == "failed"
    assert rows["sample"]["error"] == message
    # the workflow needs the stage type the failed hook should have added
    done = flowstage("run", "sample_squares", "--count", "2", "-q", env=env)
    assert done.returncode == 2
    assert message in done.stderr
    assert "unknown stage type 'batched'" in done.stderr


def test_plugin_raising_in_register_commands_leaves_the_other_commands(
    app_home: Path, sample_installed: None
) -> None:
    env = {"FLOWSTAGE_SAMPLE_RAISE_IN": "flowstage_register_commands"}
    done = flowstage("--help", env=env)
    assert done.returncode == 0
    assert "sample-squares" not in done.stdout
    assert "run" in done.stdout
    assert (
        "flowstage-sample (entry point 'sample') raised in hook flowstage_register_commands: "
        "RuntimeError"
    ) in done.stderr


def test_python_m_flowstage(app_home: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flowstage", "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert "Usage: flowstage" in done.stdout


# -- one test per hook -----------------------------------------------------------------


def test_hook_flowstage_register_executors(app_home: Path, plugins) -> None:
    from flowstage import run_workflow
    from flowstage.core.errors import ExecutorError, WorkflowError

    workflow = {
        "metadata": {"name": "where"},
        "spec": {"stages": [{"name": "where", "target": "flowstage_sample.stages.where_am_i"}]},
    }
    found = run_workflow(workflow, executor="inline", record=False)
    assert found == {
        "pid": os.getpid(),
        "thread": threading.current_thread().name,
        "executor": "inline",
        "stage": "where",
    }
    # its options are validated like a built-in's
    with pytest.raises(
        ExecutorError,
        match=r"executor 'inline': unknown option 'log_call' \(valid options: log_calls\)",
    ):
        run_workflow(workflow, executor={"name": "inline", "log_call": True}, record=False)
    # and it refuses what it cannot run before the run starts
    async_workflow = {
        "metadata": {"name": "async"},
        "spec": {"stages": [{"name": "double", "target": "flowstage_sample.stages.async_double"}]},
    }
    with pytest.raises(
        WorkflowError, match="stage 'double': async targets cannot run on the inline executor"
    ):
        run_workflow(async_workflow, {"count": 2}, executor="inline", record=False)
    assert run_workflow(async_workflow, {"count": 2}, record=False) == 4

    done = flowstage("executors", "--format", "json")
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert rows["inline"]["options"] == {"log_calls": False}
    assert rows["inline"]["plugin"] == "flowstage-sample (entry point 'sample')"


def test_hook_flowstage_register_stage_types(app_home: Path, plugins, tmp_path: Path) -> None:
    from flowstage import load_workflow, run_workflow
    from flowstage.core.errors import StageError, WorkflowError

    ok = BATCHED.format(target="batch_sizes", options="{batch_size: 3}")
    assert run_workflow(ok, {"count": 7}, record=False) == [3, 3, 3, 3, 3, 3, 1]
    squares = BATCHED.format(target="square_batch", options="{batch_size: 2}")
    assert run_workflow(squares, {"count": 5}, executor="inline", record=False) == [0, 1, 4, 9, 16]
    assert run_workflow(squares, {"count": 0}, record=False) == []
    # a parameterized stage after a plugin type maps over that type's own output
    chained = squares + (
        "    - name: again\n      target: teststages.basic.double\n"
        "      type: parameterized\n      depends_on: [sizes]\n"
    )
    assert run_workflow(chained, {"count": 5}, record=False) == [0, 2, 8, 18, 32]

    # bad use is a validation error, like the built-in types', all problems at once
    path = tmp_path / "bad.yaml"
    path.write_text(
        textwrap.dedent("""\
        kind: workflow
        metadata: {name: bad_batches}
        spec:
          stages:
            - name: make_numbers
              target: flowstage_sample.stages.make_numbers
            - name: no_size
              target: flowstage_sample.stages.square_batch
              type: batched
              depends_on: [make_numbers]
            - name: typo
              target: flowstage_sample.stages.square_batch
              type: batched
              depends_on: [make_numbers]
              options: {batchsize: 2, batch_size: 0}
            - name: nothing_to_batch
              target: flowstage_sample.stages.square_batch
              type: batched
              options: {batch_size: 2}
            - name: typo_in_type
              target: flowstage_sample.stages.square_batch
              type: bathced
              depends_on: [make_numbers]
        """),
        encoding="utf-8",
    )
    with pytest.raises(WorkflowError) as caught:
        load_workflow(str(path))
    problems = caught.value.problems
    assert (
        f"{path}: stage 'no_size': key 'options.batch_size': "
        "a batched stage needs 'options: {batch_size: N}'" in problems
    )
    assert any(
        "stage 'typo': key 'options.batchsize': unknown option of a batched stage "
        "(did you mean 'batch_size'?)" in p
        for p in problems
    )
    assert any(
        "stage 'typo': key 'options.batch_size': expected a whole number of at least 1, got 0" in p
        for p in problems
    )
    assert any(
        "stage 'nothing_to_batch': a batched stage without dependencies needs 'map_on'" in p
        for p in problems
    )
    assert any(
        "stage 'typo_in_type': key 'type': unknown stage type 'bathced' (did you mean 'batched'?)"
        in p
        and "batched" in p.split("installed:")[1]
        for p in problems
    )
    # ... and the CLI says so with exit code 2
    done = flowstage("validate", str(path))
    assert done.returncode == 2
    assert "key 'options.batchsize': unknown option of a batched stage" in done.stderr

    # a target that breaks the contract fails the run, naming stage and batch
    wrong = BATCHED.format(target="total", options="{batch_size: 2}")
    with pytest.raises(
        StageError,
        match=r"stage 'sizes': batch 0 has 2 items but the target returned int; a batched target",
    ):
        run_workflow(wrong, {"count": 3}, record=False)


def test_hook_flowstage_register_commands(app_home: Path, sample_installed: None) -> None:
    help_text = flowstage("--help").stdout
    assert re.search(r"^\s+sample-squares\s+Sum the squares", help_text, re.MULTILINE)
    own_help = flowstage("sample-squares", "--help").stdout
    for option in ("--count", "-c", "--executor", "--json"):
        assert option in own_help
    done = flowstage("sample-squares", "--count", "4", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"count": 4, "total": 14}
    done = flowstage("sample-squares", "-c", "3", "-e", "inline")
    assert done.stdout.strip() == "sum of squares below 3: 5"
    done = flowstage("sample-squares", "--count", "-1")
    assert done.returncode == 2
    assert "--count" in done.stderr


def test_hook_flowstage_workflow_paths(app_home: Path, plugins) -> None:
    from flowstage import run_workflow

    paths = [
        path
        for path, owner in plugins.registries.workflow_paths
        if "flowstage-sample" in str(owner)
    ]
    assert [Path(p).name for p in paths] == ["sample_squares.yaml"]
    assert all(Path(p).is_absolute() and Path(p).exists() for p in paths)
    assert run_workflow("sample_squares", {"count": 5}, record=False) == 30
    done = flowstage("run", "sample_squares", "--count", "5", "-q")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "30"
    done = flowstage("validate", "sample_squares")
    assert done.returncode == 0, done.stderr
    assert "workflow 'sample_squares' (3 stages)" in done.stdout
    listed = {
        row["name"]: row
        for row in json.loads(flowstage("get", "workflows", "--format", "json").stdout)
    }
    assert listed["sample_squares"]["source"] == "plugin flowstage-sample"
    assert listed["sample_squares"]["stages"] == 3


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, plugins) -> Path:
    path = tmp_path / "events.jsonl"
    monkeypatch.setenv("FLOWSTAGE_SAMPLE_EVENTS", str(path))
    return path


def _run_sample(**kwargs) -> object:
    from flowstage import run_workflow

    return run_workflow("sample_squares", {"count": 4}, record=False, **kwargs)


def test_hook_flowstage_run_started(events: Path) -> None:
    assert _run_sample() == 14
    first = _events(events)[0]
    assert first["event"] == "flowstage_run_started"
    assert first["workflow"] == "sample_squares"
    assert first["state"] == "running"


def test_hook_flowstage_stage_started(events: Path) -> None:
    _run_sample()
    started = [e for e in _events(events) if e["event"] == "flowstage_stage_started"]
    assert [e["stage"] for e in started] == ["make_numbers", "squares", "total"]
    assert all(e["stage_state"] == "running" and e["duration"] is None for e in started)


def test_hook_flowstage_stage_finished(events: Path) -> None:
    _run_sample(executor="inline")
    lines = _events(events)
    order = [(e["event"].removeprefix("flowstage_"), e.get("stage")) for e in lines]
    # in the driver, in dependency order: a stage starts only after its dependency finished
    assert order == [
        ("run_started", None),
        ("stage_started", "make_numbers"),
        ("stage_finished", "make_numbers"),
        ("stage_started", "squares"),
        ("stage_finished", "squares"),
        ("stage_started", "total"),
        ("stage_finished", "total"),
        ("run_finished", None),
    ]
    finished = [e for e in lines if e["event"] == "flowstage_stage_finished"]
    assert all(
        e["stage_state"] == "finished" and e["duration"] >= 0 and e["error"] is None
        for e in finished
    )
    assert len({e["run"] for e in lines}) == 1


def test_stage_hooks_skip_the_stages_a_retry_reuses(events: Path, tmp_path: Path) -> None:
    from flowstage import retry_run, run_workflow

    marks, flag = tmp_path / "marks", tmp_path / "flag"
    marks.mkdir()
    flag.touch()
    stages = [
        {"name": "first", "target": "teststages.resume.first"},
        {"name": "second", "target": "teststages.resume.second", "depends_on": ["first"]},
        {"name": "third", "target": "teststages.resume.third", "depends_on": ["second"]},
    ]
    workflow = {"metadata": {"name": "hooks_retry"}, "spec": {"stages": stages}}
    failed = run_workflow(workflow, {"marks": str(marks), "flag": str(flag)}, return_run=True)
    assert failed.state == "failed"
    flag.unlink()
    events.unlink()
    run = retry_run(failed.id, workflow=workflow, return_run=True)
    assert run.result == 20
    order = [(e["event"].removeprefix("flowstage_"), e.get("stage")) for e in _events(events)]
    # the reused stages never start: only the stage that runs again has stage hooks
    assert order == [
        ("run_started", None),
        ("stage_started", "third"),
        ("stage_finished", "third"),
        ("run_finished", None),
    ]
    reused = [run.stages["first"], run.stages["second"]]
    assert all(r.state == "finished" and r.note == f"reused from run {failed.id}" for r in reused)
    assert all(r.started_at is not None and r.started_at <= run.started_at for r in reused)


def test_hook_flowstage_run_finished(events: Path) -> None:
    from flowstage import run_workflow

    _run_sample()
    lines = _events(events)
    assert lines[-1] == {
        "event": "flowstage_run_finished",
        "run": lines[0]["run"],
        "workflow": "sample_squares",
        "state": "finished",
        "error": None,
    }
    # a failed run: the failed stage and the run's error reach the hooks
    events.unlink()
    failing = BATCHED.format(target="total", options="{batch_size: 2}")
    run = run_workflow(failing, {"count": 3}, record=False, return_run=True)
    assert run.state == "failed"
    lines = _events(events)
    failed_stage = next(
        e for e in lines if e["event"] == "flowstage_stage_finished" and e["stage"] == "sizes"
    )
    assert failed_stage["stage_state"] == "failed"
    assert "batch 0 has 2 items" in failed_stage["error"]
    assert lines[-1]["event"] == "flowstage_run_finished"
    assert lines[-1]["state"] == "failed"
    assert "batch 0 has 2 items" in lines[-1]["error"]


def test_raising_lifecycle_hook_is_logged_and_the_run_goes_on(
    app_home: Path, tmp_path: Path, sample_installed: None
) -> None:
    events = tmp_path / "events.jsonl"
    env = {
        "FLOWSTAGE_SAMPLE_RAISE_IN": "flowstage_run_started,flowstage_stage_started",
        "FLOWSTAGE_SAMPLE_EVENTS": str(events),
    }
    done = flowstage("run", "sample_squares", "--count", "4", "-q", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "14"
    assert (
        "flowstage-sample (entry point 'sample') raised in hook flowstage_run_started "
        "(the run goes on): "
        "RuntimeError: flowstage-sample was asked to fail in flowstage_run_started"
    ) in done.stderr
    assert done.stderr.count("raised in hook flowstage_stage_started (the run goes on)") == 3
    assert "Traceback" not in done.stderr
    # the hooks that did not raise still saw everything
    assert [e["event"] for e in _events(events)] == ["flowstage_stage_finished"] * 3 + [
        "flowstage_run_finished"
    ]


def test_raising_lifecycle_hook_in_process(events: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("flowstage.plugins")
    logger.addHandler(handler)
    monkeypatch.setenv("FLOWSTAGE_SAMPLE_RAISE_IN", "flowstage_run_finished")
    try:
        assert _run_sample() == 14
    finally:
        logger.removeHandler(handler)
    messages = [r.getMessage() for r in records]
    assert any(
        "flowstage-sample (entry point 'sample') raised in hook flowstage_run_finished" in m
        for m in messages
    )


# -- discovery in a running process ---------------------------------------------------


def test_plugin_installed_after_first_discovery_is_seen(
    app_home: Path, broken_site: Path, plugins
) -> None:
    from flowstage.core.plugin_manager import get_plugin_manager

    assert "exploding" not in {info.name for info in plugins.infos}
    sys.path.insert(0, str(broken_site))
    try:
        later = get_plugin_manager()
    finally:
        sys.path.remove(str(broken_site))
    found = {info.name: info for info in later.infos}
    assert found["exploding"].status == "failed"
    assert found["exploding"].distribution == "flowstage-broken"


# -- flowstage plugins new ------------------------------------------------------------


def make_child_env(where: Path) -> str:
    """A virtual environment that also sees this one's packages; its python."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120
    )
    python = where / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    child_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    parents = [
        p
        for p in dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    ]
    # An "import" line in a .pth runs at startup: addsitedir also runs the parent's .pth
    # files (the editable install of flowstage itself is one).
    lines = [f"import site; site.addsitedir({p!r})" for p in parents]
    Path(child_site, "_flowstage_parent_env.pth").write_text(
        "\n".join(lines) + "\n", encoding="utf-8"
    )
    return str(python)


def test_plugins_new_scaffolds_a_package_that_passes_its_own_test(
    app_home: Path, tmp_path: Path
) -> None:
    done = flowstage("plugins", "new", "weather", "--dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    root = tmp_path / "flowstage-weather"
    for part in (
        "pyproject.toml",
        "src/flowstage_weather/stages.py",
        "src/flowstage_weather/plugin.py",
        "src/flowstage_weather/workflows/weather_squares.yaml",
        "tests/conftest.py",
        "tests/test_workflow.py",
    ):
        assert (root / part).exists(), part
    # the tutorial in docs/plugins.md shows these very files
    quoted = re.findall(
        r"```(?:python|yaml)\n# (src/flowstage_weather/\S+)\n(.*?)```",
        DOCS.read_text(encoding="utf-8"),
        re.DOTALL,
    )
    assert len(quoted) == 3
    for path, code in quoted:
        assert code.strip() in (root / path).read_text(encoding="utf-8"), path
    again = flowstage("plugins", "new", "weather", "--dir", str(tmp_path))
    assert again.returncode == 2
    assert "already exists" in again.stderr
    bad = flowstage("plugins", "new", "9lives", "--dir", str(tmp_path))
    assert bad.returncode == 2

    python = make_child_env(tmp_path / "venv")
    pip_install("-e", str(root), python=python)
    test = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests")],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
        env={**os.environ, "FLOWSTAGE_HOME": str(tmp_path / "home")},
    )
    assert test.returncode == 0, test.stdout + test.stderr
    assert "2 passed" in test.stdout
    listed = subprocess.run(
        [python, "-m", "flowstage.cli", "plugins", "--format", "json"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "FLOWSTAGE_HOME": str(tmp_path / "home")},
    )
    row = {r["name"]: r for r in json.loads(listed.stdout)}["weather"]
    assert (row["distribution"], row["status"]) == ("flowstage-weather", "loaded")


def test_hook_flowstage_event_published(events: Path, tmp_path: Path) -> None:
    import asyncio

    from flowstage.core.events import WORKFLOW_FINISHED, WORKFLOW_STARTED, Event
    from flowstage.core.settings import ServiceSettings
    from flowstage.service import Service

    received: list[Event] = []

    async def serve_two_events() -> None:
        service = Service(ServiceSettings(), executor={"name": "local", "max_workers": 2})
        await service.start()
        service.subscribe(received.append)
        entry = service.submit("sample_squares", {"count": 3})
        await entry.done.wait()
        service.publish(Event("com.example.custom", {"workflow": "x"}, source="test"))
        await service.drain(1.0)
        await service.close()

    asyncio.run(serve_two_events())
    published = [e for e in _events(events) if e["event"] == "flowstage_event_published"]
    assert [(e["type"], e["workflow"], e["state"]) for e in published] == [
        (WORKFLOW_STARTED, "sample_squares", "running"),
        (WORKFLOW_FINISHED, "sample_squares", "finished"),
        ("com.example.custom", "x", None),
    ]
    # in-process subscribers get the same events, with the whole run record
    assert [e.type for e in received] == [e["type"] for e in published]
    assert received[1].data["result"] == 5 and received[1].data["source"] == "api"


# -- meta-tests -----------------------------------------------------------------------


def _hookspecs() -> dict[str, object]:
    from flowstage.core import hookspecs

    return {
        name: fn
        for name, fn in vars(hookspecs).items()
        if callable(fn) and hasattr(fn, f"{hookspecs.PROJECT}_spec")
    }


def test_every_hookspec_is_documented() -> None:
    from flowstage.core.plugin_manager import FlowstagePlugins

    specs = _hookspecs()
    assert set(specs) == {
        n for n in vars(FlowstagePlugins(discover=False).pm.hook) if n.startswith("flowstage_")
    }
    for name, fn in specs.items():
        assert re.fullmatch(r"flowstage_[a-z]+_[a-z_]+", name), name
        doc = inspect.getdoc(fn)
        assert doc, f"hook {name} has no docstring"
        assert "Called" in doc, f"hook {name}: the docstring should say when it is called"
        for parameter in inspect.signature(fn).parameters:
            assert f":param {parameter}:" in doc, (
                f"hook {name}: no ':param {parameter}:' in its docstring"
            )
        returns = inspect.signature(fn).return_annotation
        if returns not in ("None", None):
            assert ":return:" in doc, (
                f"hook {name} returns {returns} but its docstring has no ':return:'"
            )


def test_every_hook_has_a_test() -> None:
    defined: set[str] = set()
    for path in HERE.glob("**/test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defined.update(node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef))
    missing = [name for name in _hookspecs() if f"test_hook_{name}" not in defined]
    assert not missing, f"hooks without a test_hook_<name> test: {missing}"


DOCS = HERE.parent / "docs" / "plugins.md"


def test_docs_have_every_hook_with_an_example_from_the_sample_plugin() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for name, fn in _hookspecs().items():
        arguments = ", ".join(inspect.signature(fn).parameters)
        heading = f"### `{name}({arguments})`"
        assert heading in text, f"docs/plugins.md has no section {heading}"
        section = text.split(heading, 1)[1].split("\n### ", 1)[0]
        first_line = inspect.getdoc(fn).splitlines()[0]
        assert f"> {first_line}" in section, (
            f"{name}: the section should quote the docstring's first line"
        )
        assert f"def {name}(" in section, f"{name}: the section has no example implementation"


def test_docs_examples_are_the_sample_plugins_code() -> None:
    """A python block that starts with ``# tests/sample_plugin/...`` is that file's code."""
    blocks = re.findall(
        r"```python\n# (tests/sample_plugin/\S+)\n(.*?)```",
        DOCS.read_text(encoding="utf-8"),
        re.DOTALL,
    )
    assert len(blocks) >= len(_hookspecs())
    for path, code in blocks:
        source = (HERE.parent / path).read_text(encoding="utf-8")
        assert code.strip() in source, (
            f"docs/plugins.md quotes {path} but the code differs:\n{code}"
        )
