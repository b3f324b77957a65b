"""Files as Flowdapt writes and exports them parse unchanged (issue 15, items 6, 7, 9, 10);
real typos are still rejected."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from flowstage import WorkflowError, load_workflow
from flowstage.core.loading import load_resources
from flowstage.core.models import ConfigResource, Workflow


def write(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


EXPORTED = """
version: v1alpha1
kind: workflow
metadata:
  name: exported
  uid: 6c1e8f0e-4a52-4d0f-9a53-0b0f8f3c2d11
  created_at: 2024-03-01T10:00:00.123456
  updated_at: "2024-03-02T11:00:00"
  annotations: {group: nowcast}
spec:
  stages:
    - name: numbers
      target: teststages.basic.numbers
      required_resources: {cpus: 1, custom_resource: 2}
    - name: total
      target: teststages.basic.total
      depends_on: [numbers]
"""


def test_item6_a_workflow_exported_from_a_flowdapt_server_loads(tmp_path: Path) -> None:
    wf = load_workflow(write(tmp_path, EXPORTED))
    assert wf.version == "v1alpha1"
    assert wf.metadata.uid == "6c1e8f0e-4a52-4d0f-9a53-0b0f8f3c2d11"
    assert wf.metadata.created_at is not None and wf.metadata.created_at.startswith("2024-03-01")
    assert wf.metadata.updated_at == "2024-03-02T11:00:00"
    assert wf.stage("numbers").resources.requested() == {"cpus": 1.0, "custom_resource": 2.0}


def test_item6_config_selector_kind_and_default_type(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        version: v1alpha1
        kind: config
        metadata: {name: main}
        spec:
          selector:
            kind: workflow
            value: exported
          data: {n: 1}
        ---
        kind: config
        metadata: {name: by_group}
        spec:
          selector: {kind: Workflow, type: annotation, value: {group: nowcast}}
        """,
    )
    first, second = load_resources(path)
    assert isinstance(first, ConfigResource) and isinstance(second, ConfigResource)
    assert first.spec.selector is not None and first.spec.selector.type == "name"
    wf = load_workflow(write(tmp_path, EXPORTED, "exported.yaml"))
    assert first.spec.selector.matches(wf)
    assert second.spec.selector is not None and second.spec.selector.matches(wf)


TYPOS: dict[str, tuple[dict[str, Any], str]] = {
    "version": ({"version": "v2"}, "key 'version'"),
    "versoin": ({"versoin": "v1alpha1"}, "unknown key 'versoin'"),
    "metadata": ({"metadata": {"name": "x", "create_at": "2024"}}, "did you mean 'created_at'"),
    "resources": (
        {"stage": {"required_resource": {"cpus": 1}}},
        "unknown key 'required_resource'",
    ),
}


@pytest.mark.parametrize("case", sorted(TYPOS))
def test_item6_real_typos_are_still_rejected(case: str) -> None:
    change, fragment = dict(TYPOS[case][0]), TYPOS[case][1]
    stage = {"name": "a", "target": "teststages.basic.one", **change.pop("stage", {})}
    document = {"metadata": {"name": "x"}, "spec": {"stages": [stage]}, **change}
    with pytest.raises(WorkflowError) as info:
        load_workflow(document)
    assert fragment in str(info.value)


def test_item6_both_resource_spellings_must_agree() -> None:
    stage = {
        "name": "a",
        "target": "teststages.basic.one",
        "resources": {"cpus": 1},
        "required_resources": {"cpus": 2},
    }
    with pytest.raises(WorkflowError, match="keep one"):
        load_workflow({"metadata": {"name": "x"}, "spec": {"stages": [stage]}})


def test_item6_selector_kind_other_than_workflow_is_rejected() -> None:
    with pytest.raises(WorkflowError, match="selector.kind"):
        list(
            load_resources(
                "kind: config\nmetadata: {name: c}\nspec: {selector: {kind: config, value: x}}\n"
            )
        )
    assert Workflow  # the models module is the one definition


# -- item 7: trigger rules; item 9: apply several paths, folders, flowctl's run flags ------

SCHEDULE = """
kind: trigger_rule
metadata: {name: retrain}
spec:
  type: schedule
  rule: ["*/5 * * * *"]
  action:
    target: run_workflow
    parameters: {workflow: exported}
"""

CONDITION = """
kind: trigger_rule
metadata: {name: auto_predict}
spec:
  type: condition
  rule:
    and:
      - eq: [{var: type}, com.event.workflow.workflow_finished]
      - eq: [{var: data.workflow}, exported]
  action:
    target: run_workflow
    parameters: {workflow: exported}
"""


def invoke(*args: str, ok: bool = True) -> Any:
    from typer.testing import CliRunner

    from flowstage.cli.app import build_app

    result = CliRunner().invoke(build_app(), list(args))
    if ok:
        assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result


def plugin_folder(tmp_path: Path) -> Path:
    """A plugin laid out as Flowdapt's are: workflows/, configs/, triggers/, schedules/."""
    root = tmp_path / "plugin"
    write(root, EXPORTED, "workflows/exported.yaml")
    write(root, "kind: config\nmetadata: {name: main}\nspec: {data: {n: 1}}\n", "configs/main.yaml")
    write(root, CONDITION, "triggers/auto_predict.yaml")
    write(root, SCHEDULE, "schedules/retrain.yml")
    return root


def test_item7_trigger_rules_parse_and_bad_ones_are_rejected() -> None:
    from flowstage.core.models import TriggerRule

    [schedule] = load_resources(SCHEDULE)
    assert isinstance(schedule, TriggerRule) and schedule.spec.rule == ["*/5 * * * *"]
    [condition] = load_resources(CONDITION)
    assert isinstance(condition, TriggerRule) and condition.spec.type == "condition"
    with pytest.raises(WorkflowError, match="not a cron expression"):
        load_resources(SCHEDULE.replace("*/5 * * * *", "every five minutes"))
    with pytest.raises(WorkflowError, match="unknown key 'actoin'"):
        load_resources(SCHEDULE.replace("action:", "actoin:"))


def test_item7_and_9_a_plugin_folder_applies_recursively_with_its_triggers(
    tmp_path: Path,
) -> None:
    root = plugin_folder(tmp_path)
    lines = invoke("apply", "-p", str(root)).stdout.splitlines()
    assert sorted(lines) == [
        "config/main created",
        "trigger_rule/auto_predict created",
        "trigger_rule/retrain created",
        "workflow/exported created",
    ]
    import json

    rows = json.loads(invoke("get", "triggers", "--format", "json").stdout)
    assert {r["name"]: r["type"] for r in rows} == {
        "auto_predict": "condition",
        "retrain": "schedule",
    }
    assert "retrain" in invoke("get", "triggers").stdout
    assert invoke("delete", "trigger", "retrain").stdout.strip() == "trigger_rule/retrain deleted"
    rows = json.loads(invoke("get", "triggers", "--format", "json").stdout)
    assert [r["name"] for r in rows] == ["auto_predict"]
    from flowstage.core.errors import UnknownNameError

    assert isinstance(invoke("delete", "trigger", "retrain", ok=False).exception, UnknownNameError)


def test_item9_apply_applies_every_path_given(tmp_path: Path) -> None:
    first = write(tmp_path, EXPORTED, "a/one.yaml")
    second = write(tmp_path, SCHEDULE, "b/two.yaml")
    lines = invoke("apply", "-p", str(first), "-p", str(second)).stdout.splitlines()
    assert lines == ["workflow/exported created", "trigger_rule/retrain created"]
    broken = write(tmp_path, SCHEDULE.replace("schedule", "scheduel"), "c/bad.yaml")
    third = write(tmp_path, CONDITION, "d/three.yaml")
    result = invoke("apply", "-p", str(third), "-p", str(broken), ok=False)
    assert isinstance(result.exception, WorkflowError)
    assert "nothing was applied" in str(result.exception)
    rows = invoke("get", "triggers", "--format", "json").stdout
    assert "auto_predict" not in rows


def test_item9_flowctl_run_flags_are_flags_not_inputs(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        kind: workflow
        metadata: {name: echo}
        spec:
          stages:
            - name: summary
              target: teststages.basic.context_summary
        """,
    )
    result = invoke(
        "run",
        str(path),
        "--wait",
        "--result-only",
        "--show-progress",
        "--disable-progress",
        "--format",
        "json",
        "--n",
        "3",
    )
    import json

    assert json.loads(result.stdout)["input"] == {"n": 3}


def test_item10_a_schema_error_does_not_make_importable_targets_unimportable(
    tmp_path: Path,
) -> None:
    (tmp_path / "my_stages_item10.py").write_text("def one():\n    return 1\n")
    path = write(
        tmp_path,
        """
        kind: workflow
        metadata: {name: partly}
        spec:
          stages:
            - name: first
              target: my_stages_item10.one
              depend_on: []
            - name: second
              target: my_stages_item10.one
            - name: third
              target: my_stages_item10.missing
        """,
    )
    with pytest.raises(WorkflowError) as info:
        load_workflow(path)
    applied = invoke("apply", "-p", str(path), ok=False).exception
    assert isinstance(applied, WorkflowError)
    for problems in (info.value.problems, applied.problems):
        assert any("unknown key 'depend_on'" in p for p in problems), problems
        assert not any("No module named" in p for p in problems), problems
        assert any("stage 'third'" in p and "missing" in p for p in problems), problems
