"""Generated workflow documents through ``load_workflow``: a ``WorkflowError``, never
another exception, and never slow."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowstage import WorkflowError, load_workflow

KEYS = [
    "kind",
    "metadata",
    "spec",
    "name",
    "stages",
    "target",
    "depends_on",
    "type",
    "map_on",
    "options",
    "resources",
    "annotations",
    "selector",
    "data",
    "<<",
]
TARGETS = [
    "teststages.basic.one",
    "teststages.basic.double",
    "os.path.join",
    "nope.nope",
    "builtins.len",
    ":",
    "",
    "a" * 300,
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(TARGETS),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner, max_size=5),
    ),
    max_leaves=25,
)
stage = st.fixed_dictionaries(
    {
        "name": st.one_of(st.sampled_from(["a", "b", "c"]), st.text(max_size=5)),
        "target": st.one_of(st.sampled_from(TARGETS), values),
    },
    optional={
        "depends_on": st.one_of(st.lists(st.sampled_from(["a", "b", "c", "x"])), values),
        "type": st.sampled_from(["simple", "parameterized", "nope", ""]),
        "map_on": st.one_of(st.text(max_size=5), values),
        "options": values,
        "resources": values,
    },
)
workflow = st.fixed_dictionaries(
    {"kind": st.sampled_from(["workflow", "Workflow", "config", "trigger", ""])},
    optional={
        "metadata": st.one_of(st.fixed_dictionaries({"name": st.text(max_size=8)}), values),
        "spec": st.one_of(st.fixed_dictionaries({"stages": st.lists(stage, max_size=4)}), values),
        "extra": values,
    },
)


def _check(source: Any) -> None:
    try:
        load_workflow(source)
    except WorkflowError:
        pass


@settings(
    max_examples=300, deadline=1000, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(workflow)
def test_generated_workflow_documents(document: dict[str, Any]) -> None:
    _check(yaml.safe_dump(document, allow_unicode=True))


@settings(max_examples=300, deadline=1000, database=None)
@given(st.text(alphabet="[]{}:,-&*!|>'\"#\n ab1", max_size=60))
def test_generated_yaml_text(text: str) -> None:
    _check(text + "\n# a comment line keeps this YAML text, not a path\n")
