"""``apply``, ``get``, ``inspect``, ``delete``, ``runs`` and ``config show``: through
typer's CliRunner on a fresh ``build_app`` and, for exit codes and recorded CLI runs,
through a real ``flowstage`` process. Each test has its own FLOWSTAGE_HOME."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cli_process import cli
from flowstage.cli.app import build_app
from flowstage.core.errors import UnknownNameError, UserError, WorkflowError

RESOURCES = """\
kind: workflow
metadata:
  name: features
  annotations: {group: nowcast}
spec:
  stages:
    - name: settings
      target: teststages.state.config_dict
---
kind: workflow
metadata: {name: counting}
spec:
  stages:
    - name: numbers
      target: teststages.basic.numbers
    - name: total
      target: teststages.basic.total
      depends_on: numbers
---
kind: config
metadata: {name: nowcast_defaults}
spec:
  selector: {type: annotation, value: {group: nowcast}}
  data: {study_identifier: demo, data_config: {n: 3}}
---
kind: config
metadata: {name: for_features}
spec:
  selector: {type: name, value: features}
  data: {data_config: {city: Oslo}}
"""


def invoke(*args: str, ok: bool = True):
    result = CliRunner().invoke(build_app(), list(args))
    if ok:
        assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result


@pytest.fixture
def resources(tmp_path: Path) -> Path:
    path = tmp_path / "resources.yaml"
    path.write_text(RESOURCES)
    return path


def test_apply_reports_created_unchanged_and_updated(resources: Path) -> None:
    assert invoke("apply", "-p", str(resources)).stdout.splitlines() == [
        "workflow/features created",
        "workflow/counting created",
        "config/nowcast_defaults created",
        "config/for_features created",
    ]
    assert invoke("apply", "-p", str(resources)).stdout.splitlines() == [
        "workflow/features unchanged",
        "workflow/counting unchanged",
        "config/nowcast_defaults unchanged",
        "config/for_features unchanged",
    ]
    resources.write_text(RESOURCES.replace("city: Oslo", "city: Lima"))
    assert "config/for_features updated" in invoke("apply", "-p", str(resources)).stdout
    [config] = json.loads(invoke("get", "configs", "for_features", "--format", "json").stdout)
    assert config["version"] == 2 and config["data"] == {"data_config": {"city": "Lima"}}


def test_apply_a_folder_of_files(tmp_path: Path) -> None:
    folder = tmp_path / "defs"
    (folder / "nested").mkdir(parents=True)
    documents = RESOURCES.split("---\n")
    for index, document in enumerate(documents[:3]):
        (folder / f"{index}.yaml").write_text(document)
    (folder / "nested" / "deeper.yml").write_text(documents[3])
    (folder / "notes.txt").write_text("not a resource")
    assert len(invoke("apply", "-p", str(folder), "--no-recursive").stdout.splitlines()) == 3
    # sub-folders are read by default, as flowctl does
    assert "config/for_features created" in invoke("apply", "-p", str(folder)).stdout


def test_a_bad_resource_in_a_multi_document_file_applies_none_and_is_named(tmp_path: Path) -> None:
    path = tmp_path / "mixed.yaml"
    path.write_text(
        RESOURCES
        + """\
---
kind: workflow
metadata: {name: broken}
spec:
  stages:
    - name: missing
      target: teststages.state.no_such_function
"""
    )
    result = invoke("apply", "-p", str(path), ok=False)
    assert isinstance(result.exception, WorkflowError)
    message = str(result.exception)
    assert (
        f"{path} (document 5)" in message
        and "'missing'" in message
        and "no_such_function" in message
    )
    assert "nothing was applied" in message
    assert json.loads(invoke("get", "workflows", "--format", "json").stdout) == [
        w
        for w in json.loads(invoke("get", "workflows", "--format", "json").stdout)
        if w["source"] != "applied"
    ]
    assert json.loads(invoke("get", "configs", "--format", "json").stdout) == []
    # the same through the real command: exit code 2, the message on stderr
    done = cli("apply", "-p", str(path))
    assert done.returncode == 2 and "document 5" in done.stderr and "Traceback" not in done.stderr


def test_a_typo_in_a_config_and_duplicate_names_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(
        "kind: config\nmetadata: {name: a}\nspec: {selecter: {type: name, value: x}}\n---\n"
        "kind: config\nmetadata: {name: b}\nspec: {data: {}}\n---\n"
        "kind: config\nmetadata: {name: b}\n"
    )
    result = invoke("apply", "-p", str(path), ok=False)
    assert "selecter" in str(result.exception)
    path.write_text(
        "kind: config\nmetadata: {name: b}\nspec: {data: {}}\n---\n"
        "kind: config\nmetadata: {name: b}\n"
    )
    result = invoke("apply", "-p", str(path), ok=False)
    assert "config 'b' is also defined in" in str(result.exception)


def test_get_workflows_lists_applied_and_shipped_ones(
    resources: Path, sample_installed: None
) -> None:
    invoke("apply", "-p", str(resources))
    rows = json.loads(invoke("get", "workflows", "--format", "json").stdout)
    sources = {r["name"]: r["source"] for r in rows}
    assert sources["features"] == "applied" and sources["counting"] == "applied"
    assert sources["sample_squares"] == "plugin flowstage-sample"
    table = invoke("get", "workflows").stdout
    assert table.splitlines()[0].split() == [
        "NAME",
        "SOURCE",
        "STAGES",
        "ANNOTATIONS",
        "VERSION",
        "UPDATED",
    ]
    assert "group=nowcast" in table and "sample_squares" in table
    [one] = yaml.safe_load(invoke("get", "workflow", "counting", "--format", "yaml").stdout)
    assert one["stages"] == 2 and one["file"] == str(resources.resolve())
    result = invoke("get", "workflows", "nope", ok=False)
    assert isinstance(result.exception, UnknownNameError) and "features" in str(result.exception)


def test_inspect_shows_configs_that_apply_and_workflows_a_config_applies_to(
    resources: Path, sample_installed: None
) -> None:
    invoke("apply", "-p", str(resources))
    shown = yaml.safe_load(invoke("inspect", "workflow", "features").stdout)
    assert shown["kind"] == "workflow" and shown["spec"]["stages"][0]["name"] == "settings"
    assert shown["status"]["configs"] == ["for_features", "nowcast_defaults"]
    assert shown["status"]["config"] == {
        "study_identifier": "demo",
        "data_config": {"n": 3, "city": "Oslo"},
    }
    config = yaml.safe_load(invoke("inspect", "config", "nowcast_defaults").stdout)
    assert config["spec"]["data"]["study_identifier"] == "demo"
    assert config["status"]["applies_to"] == ["features"]
    shipped = json.loads(invoke("inspect", "workflow", "sample_squares", "--format", "json").stdout)
    assert shipped["status"]["source"] == "plugin flowstage-sample (entry point 'sample')"


def test_cli_run_of_an_applied_workflow_is_recorded_with_its_config(resources: Path) -> None:
    invoke("apply", "-p", str(resources))
    done = cli("run", "features", "--format", "json", "-q")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "study_identifier": "demo",
        "data_config": {"n": 3, "city": "Oslo"},
    }
    done = cli("run", "counting", "--n_vals", "4", "-q")
    assert done.stdout.strip() == "6"
    listed = cli("get", "runs", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert [r["workflow"] for r in runs] == ["counting", "features"]  # newest first
    assert all(
        set(r) == {"id", "workflow", "state", "source", "started_at", "finished_at"} for r in runs
    )
    assert {r["source"] for r in runs} == {"cli"} and {r["state"] for r in runs} == {"finished"}
    detail = yaml.safe_load(invoke("inspect", "run", runs[0]["id"][:6]).stdout)
    assert detail["result"] == 6 and detail["input"] == {"n_vals": 4}
    assert (
        detail["stages"]["numbers"]["state"] == "finished"
        and detail["stages"]["total"]["attempts"] == 1
    )
    assert detail["stages"]["total"]["duration"] is not None


def test_runs_lists_filters_and_pages(resources: Path) -> None:
    from flowstage import run_workflow

    invoke("apply", "-p", str(resources))
    ids = [run_workflow("counting", {"n_vals": i}, return_run=True).id for i in range(5)]
    run_workflow(
        {
            "metadata": {"name": "breaks"},
            "spec": {"stages": [{"name": "boom", "target": "teststages.state.fails"}]},
        },
        return_run=True,
    )
    assert [
        r["id"]
        for r in json.loads(invoke("runs", "--workflow", "counting", "--format", "json").stdout)
    ] == ids[::-1]
    assert [
        r["id"] for r in json.loads(invoke("get", "runs", "counting", "--format", "json").stdout)
    ] == ids[::-1]
    page = json.loads(
        invoke("get", "runs", "counting", "--limit", "2", "--page", "2", "--format", "json").stdout
    )
    assert [r["id"] for r in page] == [ids[2], ids[1]]
    failed = json.loads(invoke("runs", "--state", "failed", "--format", "json").stdout)
    assert [r["workflow"] for r in failed] == ["breaks"]
    table = invoke("runs", "--limit", "3")
    assert table.stdout.splitlines()[0].split() == [
        "ID",
        "WORKFLOW",
        "STATE",
        "SOURCE",
        "STARTED",
        "DURATION",
    ]
    assert len(table.stdout.splitlines()) == 4 and "runs 1-3 of 6" in table.stderr
    [one] = json.loads(invoke("get", "runs", ids[0], "--format", "json").stdout)
    assert one["id"] == ids[0]
    detail = yaml.safe_load(invoke("inspect", "run", failed[0]["id"]).stdout)
    assert detail["state"] == "failed" and "state stage fails on purpose" in detail["error"]
    assert "ValueError" in detail["traceback"] and detail["stages"]["boom"]["state"] == "failed"


def test_delete_keeps_the_history_and_unknown_names_are_errors(
    resources: Path, tmp_path: Path
) -> None:
    from flowstage import run_workflow

    invoke("apply", "-p", str(resources))
    run_workflow("counting", {"n_vals": 3})
    assert invoke("delete", "workflow", "counting").stdout.strip() == "workflow/counting deleted"
    assert [
        r["workflow"] for r in json.loads(invoke("get", "runs", "--format", "json").stdout)
    ] == ["counting"]
    result = invoke("delete", "workflow", "counting", ok=False)
    assert isinstance(result.exception, UnknownNameError) and "features" in str(result.exception)
    result = invoke("run", "counting", ok=False)
    assert isinstance(result.exception, UnknownNameError)
    assert invoke("delete", "-p", str(resources)).stdout.splitlines() == [
        "workflow/features deleted",
        "workflow/counting not found",
        "config/nowcast_defaults deleted",
        "config/for_features deleted",
    ]
    assert json.loads(invoke("get", "configs", "--format", "json").stdout) == []
    result = invoke("delete", "widget", "x", ok=False)
    assert isinstance(result.exception, UserError) and "unknown kind 'widget'" in str(
        result.exception
    )
    done = cli("delete", "config", "nope")
    assert done.returncode == 2 and "no applied config named 'nope'" in done.stderr


def test_config_show_names_where_each_value_comes_from(
    app_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (app_home / "settings.yaml").write_text(
        "executor: {name: local, max_workers: 3}\nstore: {busy_timeout: 5s}\n"
    )
    monkeypatch.setenv("FLOWSTAGE__STORE__HEARTBEAT_INTERVAL", "500ms")
    rows = {r["key"]: r for r in json.loads(invoke("config", "show", "--format", "json").stdout)}
    assert rows["executor.max_workers"]["value"] == 3
    assert rows["executor.max_workers"]["source"] == f"settings file {app_home / 'settings.yaml'}"
    assert rows["store.busy_timeout"]["value"] == 5.0
    assert rows["store.heartbeat_interval"] == {
        "key": "store.heartbeat_interval",
        "value": 0.5,
        "source": "environment FLOWSTAGE__STORE__HEARTBEAT_INTERVAL",
    }
    assert rows["store.max_inline_result"]["source"] == "default"
    table = invoke("config", "show").stdout
    assert table.splitlines()[0].split() == ["KEY", "VALUE", "SOURCE"]


def test_a_corrupt_store_is_a_clear_cli_error(app_home: Path) -> None:
    (app_home / "flowstage.db").write_text("garbage " * 200)
    done = cli("get", "runs")
    assert done.returncode == 2
    assert str(app_home / "flowstage.db") in done.stderr and "Traceback" not in done.stderr
