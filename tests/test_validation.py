"""Static validation: every problem is reported at once, before any stage runs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from flowstage import WorkflowError, load_workflow, run_workflow


def write(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def marker_workflow(tmp_path: Path, extra_stage: str) -> tuple[Path, Path]:
    """A workflow whose root stage writes a marker file, plus one broken stage."""
    marker = tmp_path / "marker.txt"
    path = write(
        tmp_path,
        f"""
        kind: workflow
        metadata: {{name: guarded}}
        spec:
          stages:
            - name: root
              target: teststages.basic.mark
{textwrap.indent(textwrap.dedent(extra_stage), "            ")}
    """,
    )
    return path, marker


def assert_rejected(
    path: Path, marker: Path, *fragments: str, run_input: dict | None = None
) -> str:
    run_input = {"marker": str(marker), **(run_input or {})}
    with pytest.raises(WorkflowError) as info:
        run_workflow(path, run_input)
    message = str(info.value)
    assert not marker.exists(), "a stage ran although the workflow is invalid"
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in:\n{message}"
    return message


CASES = {
    "unknown_dependency": (
        """
        - name: child
          target: teststages.basic.total
          depends_on: [roots]
    """,
        ["stage 'child'", "'depends_on'", "unknown stage 'roots'", "did you mean 'root'"],
    ),
    "typo_key": (
        """
        - name: child
          target: teststages.basic.total
          depend_on: [root]
    """,
        ["stage 'child'", "unknown key 'depend_on'", "did you mean 'depends_on'"],
    ),
    "duplicate_name": (
        """
        - name: root
          target: teststages.basic.one
    """,
        ["stage 'root'", "duplicate stage name"],
    ),
    "unknown_type": (
        """
        - name: child
          target: teststages.basic.double
          type: paramterized
          depends_on: [root]
    """,
        [
            "stage 'child'",
            "'type'",
            "unknown stage type 'paramterized'",
            "did you mean 'parameterized'",
            "installed:",
        ],
    ),
    "target_does_not_import": (
        """
        - name: child
          target: teststages.no_such_module.fn
          depends_on: [root]
    """,
        ["stage 'child'", "'target'", "teststages.no_such_module.fn", "no_such_module"],
    ),
    "target_missing_attribute": (
        """
        - name: child
          target: teststages.basic.no_such_function
          depends_on: [root]
    """,
        ["stage 'child'", "has no attribute 'no_such_function'"],
    ),
    "target_not_callable": (
        """
        - name: child
          target: teststages.basic.__name__
          depends_on: [root]
    """,
        ["stage 'child'", "not a callable"],
    ),
    "bad_resource": (
        """
        - name: child
          target: teststages.basic.total
          depends_on: [root]
          resources: {cpus: -1, memory: 8XB, my_label: lots}
    """,
        ["stage 'child'", "resources.cpus", "resources.memory", "8XB", "my_label"],
    ),
    "bad_duration": (
        """
        - name: child
          target: teststages.basic.total
          depends_on: [root]
          timeout: soon
    """,
        ["stage 'child'", "'timeout'", "expected a duration", "soon"],
    ),
    "too_many_dependencies_for_signature": (
        """
        - name: other
          target: teststages.basic.one
        - name: child
          target: teststages.basic.total
          depends_on: [root, other]
    """,
        ["stage 'child'", "takes 1 positional parameter but is given 2"],
    ),
    "parameterized_root_without_map_on": (
        """
        - name: child
          target: teststages.basic.double
          type: parameterized
    """,
        ["stage 'child'", "needs 'map_on'"],
    ),
    "map_on_conflict": (
        """
        - name: child
          target: teststages.basic.double
          type: parameterized
          map_on: xs
          options: {map_on: ys}
    """,
        ["stage 'child'", "both at the top of the stage"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_invalid_workflow_is_rejected_before_anything_runs(tmp_path: Path, case: str) -> None:
    stage, fragments = CASES[case]
    path, marker = marker_workflow(tmp_path, stage)
    assert_rejected(path, marker, *fragments)


def test_cycle_is_printed(tmp_path: Path) -> None:
    path, marker = marker_workflow(
        tmp_path,
        """
        - name: a
          target: teststages.basic.total
          depends_on: [c]
        - name: b
          target: teststages.basic.total
          depends_on: [a]
        - name: c
          target: teststages.basic.total
          depends_on: [b]
    """,
    )
    message = assert_rejected(path, marker, "cycle")
    assert (
        "a -> b -> c -> a" in message
        or "b -> c -> a -> b" in message
        or "c -> a -> b -> c" in message
    )


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path, marker = marker_workflow(
        tmp_path,
        """
        - name: child
          target: teststages.basic.total
          depend_on: [root]
        - name: other
          target: teststages.basic.total
          depends_on: [nope]
        - name: third
          target: nomodule.fn
    """,
    )
    message = assert_rejected(
        path, marker, "unknown key 'depend_on'", "unknown stage 'nope'", "nomodule"
    )
    assert "3 problems found" in message


def test_missing_root_input_is_rejected(tmp_path: Path) -> None:
    path, marker = marker_workflow(
        tmp_path,
        """
        - name: numbers
          target: teststages.basic.numbers
    """,
    )
    assert_rejected(path, marker, "stage 'numbers'", "missing 'n_vals'")


def test_input_that_cannot_be_coerced_is_rejected(tmp_path: Path) -> None:
    path, marker = marker_workflow(
        tmp_path,
        """
        - name: numbers
          target: teststages.basic.numbers
    """,
    )
    assert_rejected(
        path,
        marker,
        "stage 'numbers'",
        "input 'n_vals'",
        "expected int",
        run_input={"n_vals": "five"},
    )


def test_missing_map_on_key_is_rejected(tmp_path: Path) -> None:
    path, marker = marker_workflow(
        tmp_path,
        """
        - name: mapped
          target: teststages.basic.double
          type: parameterized
          map_on: payload_cities
    """,
    )
    assert_rejected(path, marker, "stage 'mapped'", "'map_on'", "no key 'payload_cities'")


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "kind: workflow\nmetadata: {name: x\nspec: []\n")
    with pytest.raises(WorkflowError, match=r"wf\.yaml: not valid YAML \(line \d+"):
        load_workflow(path)


def test_missing_file() -> None:
    with pytest.raises(WorkflowError, match="no_such.yaml: no such file"):
        load_workflow("no_such.yaml")


def test_wrong_kind_and_bad_name(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError, match="unknown kind 'workflw'.*did you mean 'workflow'"):
        load_workflow({"kind": "workflw", "metadata": {"name": "x"}, "spec": {"stages": []}})
    with pytest.raises(WorkflowError, match="metadata.name"):
        load_workflow(
            {
                "metadata": {"name": "has space"},
                "spec": {"stages": [{"name": "a", "target": "x.y"}]},
            }
        )


def test_annotations_and_labels_are_free_form_but_metadata_is_not() -> None:
    wf = load_workflow(
        {
            "metadata": {"name": "x", "annotations": {"anything": [1, 2]}, "labels": {"a": "b"}},
            "spec": {"stages": [{"name": "a", "target": "teststages.basic.one"}]},
        }
    )
    assert wf.metadata.annotations == {"anything": [1, 2]}
    with pytest.raises(
        WorkflowError, match="unknown key 'annotation' under 'metadata'.*did you mean 'annotations'"
    ):
        load_workflow(
            {
                "metadata": {"name": "x", "annotation": {}},
                "spec": {"stages": [{"name": "a", "target": "teststages.basic.one"}]},
            }
        )


def test_flowdapt_stage_keys_are_accepted() -> None:
    wf = load_workflow(
        {
            "metadata": {"name": "x"},
            "spec": {
                "stages": [
                    {
                        "name": "a",
                        "target": "teststages.basic.double",
                        "type": "parameterized",
                        "description": "d",
                        "version": "1",
                        "priority": 2,
                        "depends_on": "b",
                        "options": {"allow_partial_failure": True},
                    },
                    {"name": "b", "target": "teststages.basic.numbers"},
                ]
            },
        }
    )
    stage = wf.stage("a")
    assert stage.depends_on == ["b"]
    assert stage.allow_partial_failure is True
    assert stage.options == {}


def test_durations_and_memory_parse() -> None:
    from flowstage.core.units import parse_duration, parse_memory

    assert parse_duration("500ms") == 0.5
    assert parse_duration("0.5s") == 0.5
    assert parse_duration("2m") == 120
    assert parse_duration("1h") == 3600
    assert parse_duration(3) == 3.0
    assert parse_memory("8GB") == 8 * 10**9
    assert parse_memory("512MiB") == 512 * 2**20
    assert parse_memory(1024) == 1024
    for bad in ("soon", "-1s", True):
        with pytest.raises(ValueError):
            parse_duration(bad)
    for bad in ("8XB", "lots", -1):
        with pytest.raises(ValueError):
            parse_memory(bad)


def test_stages_that_fail_their_schema_still_count_as_names(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        kind: workflow
        metadata: {name: partly}
        spec:
          stages:
            - name: fetch
              target: teststages.basic.one
              depend_on: [start]
            - name: process
              target: teststages.basic.total
              depends_on: [fetch]
            - name: report
              target: teststages.basic.total
              depends_on: [fetsh]
    """,
    )
    with pytest.raises(WorkflowError) as info:
        load_workflow(path)
    problems = info.value.problems
    assert any("stage 'fetch': unknown key 'depend_on'" in p for p in problems)
    assert any(
        "stage 'report'" in p and "unknown stage 'fetsh' (did you mean 'fetch'?)" in p
        for p in problems
    )
    assert not any("stage 'process'" in p for p in problems), problems
