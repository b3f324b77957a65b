"""Generated workflow documents through ``load_workflow``, ``flowstage validate``,
``flowstage apply`` (the CLI in-process) and ``apply_path``: a ``WorkflowError`` or a
clear exit-2 error, never another exception or a traceback, and never slow (a deadline
of 1 s per example)."""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowstage import WorkflowError, load_workflow
from flowstage.cli.main import run_cli
from flowstage.core.plugin_manager import default_plugins
from flowstage.state.resources import apply_path

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


@settings(max_examples=1000, deadline=1000, database=None)
@given(st.text(alphabet="[]{}:,-&*!|>'\"#\n ab1", max_size=60))
def test_generated_yaml_text(text: str) -> None:
    _check(text + "\n# a comment line keeps this YAML text, not a path\n")


#: other kinds ``apply`` takes, alongside workflows in one file
resource = st.fixed_dictionaries(
    {"kind": st.sampled_from(["config", "trigger", "trigger_rule", "workflow"])},
    optional={
        "metadata": st.one_of(
            st.fixed_dictionaries(
                {"name": st.text(max_size=8)},
                optional={"annotations": values, "labels": values},
            ),
            values,
        ),
        "spec": values,
    },
)
documents = st.lists(st.one_of(workflow, resource), min_size=1, max_size=3)


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    # one folder for the module: Hypothesis runs many examples per test function call
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def _write(folder: Path, docs: list[dict[str, Any]]) -> Path:
    path = folder / "generated.yaml"
    path.write_text(yaml.safe_dump_all(docs, allow_unicode=True))
    return path


def _cli(*args: str) -> None:
    """``flowstage ARGS`` in this process: exit 0, or 2 with one ``error:`` line and no
    traceback; any other exception propagates and fails the example."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = run_cli(list(args))
    text = err.getvalue()
    assert "Traceback" not in text, text
    assert code == 0 or (code == 2 and text.startswith(("error: ", "Usage:"))), (code, text)


@settings(
    max_examples=150,
    deadline=1000,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(documents)
def test_generated_documents_through_cli_validate_and_apply(
    folder: Path, docs: list[dict[str, Any]]
) -> None:
    path = _write(folder, docs)
    _cli("validate", str(path))
    _cli("apply", "--path", str(path))


@settings(
    max_examples=400,
    deadline=1000,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(documents)
def test_generated_documents_through_apply_path(folder: Path, docs: list[dict[str, Any]]) -> None:
    path = _write(folder, docs)
    try:
        apply_path(path, default_plugins())
    except WorkflowError:
        pass


def test_the_cli_run_many_times_in_one_process_logs_each_message_once(folder: Path) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):  # one stderr, as in a process that embeds the CLI
        for _ in range(3):
            run_cli(["validate", str(folder / "missing.yaml")])
        logging.getLogger("flowstage.test").warning("once")
    assert err.getvalue().count("WARNING: once") == 1, err.getvalue()
