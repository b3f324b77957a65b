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
