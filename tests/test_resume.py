"""Retrying a failed run (``flowstage runs retry``, ``retry_run``): the stages that
finished are not called again, on every executor."""

from __future__ import annotations

import base64
import json
import pickle
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from flowstage import retry_run, run_workflow
from flowstage.cli.app import build_app
from flowstage.cli.main import run_cli
from flowstage.core.errors import UserError, WorkflowError
from teststages.resume import calls

R = "teststages.resume."


def write_workflow(path: Path, name: str, *stages: dict[str, Any]) -> Path:
    document = {"kind": "workflow", "metadata": {"name": name}, "spec": {"stages": list(stages)}}
    path.write_text(yaml.safe_dump(document))
    return path


def stage(name: str, target: str, *depends_on: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "target": R + target, "depends_on": list(depends_on), **extra}


@pytest.fixture
def chain(tmp_path: Path) -> tuple[Path, dict[str, str], Path]:
    """A 3-stage chain whose last stage fails while a flag file exists."""
    marks, flag = tmp_path / "marks", tmp_path / "flag"
    marks.mkdir()
    flag.touch()
    path = write_workflow(
        tmp_path / "chain.yaml",
        "chain3",
        stage("first", "first"),
        stage("second", "second", "first"),
        stage("third", "third", "second"),
    )
    return path, {"marks": str(marks), "flag": str(flag)}, marks


def test_retry_skips_finished_stages(executor, chain):
    path, run_input, marks = chain
    failed = run_workflow(str(path), run_input, executor=executor, return_run=True)
    assert failed.state == "failed"
    assert set(failed.outputs) == {"first", "second"}
    Path(run_input["flag"]).unlink()
    run = retry_run(failed.id, executor=executor, return_run=True)
    assert run.state == "finished", run.error
    assert run.result == 20
    assert run.retry_of == failed.id
    assert (calls(marks, "first"), calls(marks, "second"), calls(marks, "third")) == (1, 1, 2)
    assert run.stages["second"].note == f"reused from run {failed.id}"
    assert run.stages["third"].note is None


def test_parameterized_retry_runs_only_failed_items(executor, tmp_path):
    marks, flag = tmp_path / "marks", tmp_path / "flag"
    marks.mkdir()
    flag.touch()
    path = write_workflow(
        tmp_path / "map.yaml",
        "map10",
        stage("items", "items"),
        stage("square", "square", "items", type="parameterized"),
        stage("collect", "squares", "square"),
    )
    run_input = {"marks": str(marks), "flag": str(flag), "n": 10}
    failed = run_workflow(str(path), run_input, executor=executor, return_run=True)
    assert failed.state == "failed"
    kept = failed.item_outputs["square"]
    assert kept and not {3, 7} & set(kept)
    before = {i: calls(marks, f"item{i}") for i in range(10)}
    Path(flag).unlink()
    run = retry_run(failed.id, executor=executor, return_run=True)
    assert run.state == "finished", run.error
    assert run.result == [i * i for i in range(10)]
    assert calls(marks, "items") == 1
    again = {i for i in range(10) if calls(marks, f"item{i}") > before[i]}
    # only the items without a kept result run: the two that failed, and those the
    # failure stopped before they finished
    assert again == set(range(10)) - set(kept)
    assert run.stages["square"].note == f"{len(kept)} item(s) reused from run {failed.id}"


def test_changed_workflow(chain, tmp_path):
    path, run_input, marks = chain
    failed = run_workflow(str(path), run_input, return_run=True)
    Path(run_input["flag"]).unlink()
    # 'second' is gone (ignored), 'extra' is new, 'third' now depends on 'extra'
    write_workflow(
        path,
        "chain3",
        stage("first", "first"),
        stage("extra", "second", "first"),
        stage("third", "third", "extra"),
    )
    run = retry_run(failed.id, return_run=True)
    assert run.state == "finished", run.error
    assert run.result == 20
    assert calls(marks, "first") == 1  # reused
    assert calls(marks, "second") == 2  # the original 'second', then the new 'extra'
    assert run.stages["first"].note and run.stages["extra"].note is None


def test_dependencies_changed_stage_runs(chain):
    path, run_input, marks = chain
    failed = run_workflow(str(path), run_input, return_run=True)
    Path(run_input["flag"]).unlink()
    write_workflow(
        path,
        "chain3",
        stage("first", "first"),
        stage("second", "second"),
        stage("third", "third", "first"),
    )
    with pytest.raises(Exception):  # noqa: B017 - 'second' has no input now: a WorkflowError
        retry_run(failed.id)
    assert calls(marks, "first") == 1


def test_reused_stages_are_not_checked(chain):
    path, run_input, marks = chain
    failed = run_workflow(str(path), run_input, return_run=True)
    Path(run_input["flag"]).unlink()
    write_workflow(
        path,
        "chain3",
        stage("first", "no_such_function"),
        stage("second", "second", "first"),
        stage("third", "third", "second"),
    )
    # 'first' is reused, not called: its target is not imported
    assert retry_run(failed.id) == 20
    assert calls(marks, "third") == 2
    with pytest.raises(WorkflowError, match="no_such_function"):
        run_workflow(str(path), run_input)  # a run that would call it checks it


def test_missing_output_is_a_clear_error(chain, app_home, monkeypatch):
    monkeypatch.setenv("FLOWSTAGE__STORE__MAX_INLINE_RESULT", "10")  # outputs in files
    path, run_input, _ = chain
    failed = run_workflow(str(path), run_input, return_run=True)
    for file in (app_home / "outputs" / failed.id).iterdir():
        file.unlink()
    result = CliRunner().invoke(build_app(), ["runs", "retry", failed.id])
    assert "the output of stage 'first' is missing: its file" in str(result.exception)
    assert run_cli(["runs", "retry", failed.id, "-q"]) == 2


def test_outputs_kept_one_by_one_still_load(chain, app_home):
    """Runs recorded before small outputs were bundled kept one base64 pickle each."""
    path, run_input, marks = chain
    failed = run_workflow(str(path), run_input, return_run=True)
    stages = {
        name: {"kind": "inline", "data": base64.b64encode(pickle.dumps(value)).decode()}
        for name, value in failed.outputs.items()
    }
    document = {"workflow": str(path.resolve()), "kept": True, "stages": stages}
    with sqlite3.connect(app_home / "flowstage.db") as conn:
        conn.execute("UPDATE runs SET outputs = ? WHERE id = ?", (json.dumps(document), failed.id))
    Path(run_input["flag"]).unlink()
    assert retry_run(failed.id) == 20
    assert (calls(marks, "first"), calls(marks, "second")) == (1, 1)


def test_background_retry_checks_outputs_before_it_starts(chain, app_home, monkeypatch):
    monkeypatch.setenv("FLOWSTAGE__STORE__MAX_INLINE_RESULT", "10")  # outputs in files
    path, run_input, _ = chain
    failed = run_workflow(str(path), run_input, return_run=True)
    for file in (app_home / "outputs" / failed.id).iterdir():
        file.unlink()
    assert run_cli(["runs", "retry", failed.id, "--no-wait", "-q"]) == 2
    from flowstage.state.store import get_store

    assert get_store().list_runs()[1] == 1  # nothing was started


def test_run_recorded_without_outputs(chain, app_home):
    path, run_input, _ = chain
    failed = run_workflow(str(path), run_input, return_run=True)
    with sqlite3.connect(app_home / "flowstage.db") as conn:
        conn.execute("UPDATE runs SET outputs = NULL WHERE id = ?", (failed.id,))
    with pytest.raises(UserError, match="kept nothing to retry from"):
        retry_run(failed.id)


def test_big_outputs_go_to_files_removed_with_the_run(chain, app_home, monkeypatch):
    monkeypatch.setenv("FLOWSTAGE__STORE__MAX_INLINE_RESULT", "10")
    path, run_input, marks = chain
    failed = run_workflow(str(path), run_input, return_run=True)
    folder = app_home / "outputs" / failed.id
    assert len(list(folder.iterdir())) == 2
    Path(run_input["flag"]).unlink()
    assert retry_run(failed.id) == 20
    assert calls(marks, "second") == 1
    assert run_cli(["delete", "run", failed.id]) == 0
    assert not folder.exists()


def test_finished_runs_keep_no_outputs_by_default(chain, monkeypatch):
    path, run_input, _ = chain
    Path(run_input["flag"]).unlink()
    done = run_workflow(str(path), run_input, return_run=True)
    assert done.outputs is None
    assert run_cli(["runs", "retry", done.id, "-q"]) == 2
    monkeypatch.setenv("FLOWSTAGE__STORE__KEEP_OUTPUTS", "true")
    kept = run_workflow(str(path), run_input, return_run=True)
    assert set(kept.outputs) == {"first", "second", "third"}
    assert retry_run(kept.id) == 20


def test_cli_retry(chain, capfd):
    path, run_input, marks = chain
    args = ["run", str(path), "-q", "--marks", run_input["marks"], "--flag", run_input["flag"]]
    assert run_cli(args) == 1
    capfd.readouterr()
    from flowstage.state.store import get_store

    (row,), _ = get_store().list_runs(limit=1)
    assert run_cli(["runs", "retry", row["id"], "-q"]) == 1  # the flag is still there
    err = capfd.readouterr().err
    assert f"retries run {row['id']}: reusing first, second" in err
    Path(run_input["flag"]).unlink()
    assert run_cli(["runs", "retry", row["id"], "-q", "--format", "json"]) == 0
    out = capfd.readouterr()
    assert out.out.strip() == "20"
    assert (calls(marks, "first"), calls(marks, "third")) == (1, 3)
    (latest,), _ = get_store().list_runs(limit=1)
    assert run_cli(["inspect", "run", latest["id"], "--format", "json"]) == 0
    assert f'"retry_of": "{row["id"]}"' in capfd.readouterr().out
    assert run_cli(["runs", "retry", "nosuchrun"]) == 2
