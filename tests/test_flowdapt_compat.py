"""The Flowdapt API that real plugins import, provided by ``flowstage.compat.flowdapt``
under the name ``flowdapt`` (issue 15, items 1-5), used in-process here; the plugin
suite (test_flowdapt_plugin.py) runs it on every executor."""

from __future__ import annotations

import pytest

from flowstage.core.errors import ArtifactNotFound, ObjectNotFound


def test_item3_a_missing_artifact_is_a_file_not_found_error_and_a_key_error() -> None:
    from flowstage.artifacts import get_artifact, new_artifact

    with pytest.raises(FileNotFoundError):
        get_artifact("never_made")
    with pytest.raises(KeyError):
        get_artifact("never_made")
    with pytest.raises(ObjectNotFound) as info:
        get_artifact("never_made")
    assert isinstance(info.value, ArtifactNotFound)
    assert str(info.value).startswith("no artifact 'never_made' in namespace 'default'")
    made = new_artifact("made")
    made.remove()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        made.get_meta("anything")


def test_item5_the_run_config_is_a_dict_too_and_the_run_has_uid_and_name() -> None:
    import json

    from flowstage import run_workflow

    wf = {
        "metadata": {"name": "cfg"},
        "spec": {"stages": [{"name": "s", "target": "teststages.flowdapt_config.dump"}]},
    }
    result = run_workflow(wf, {"n": 1}, config={"study": "x", "nested": {"a": 1}})
    assert json.loads(result["json"]) == {"study": "x", "nested": {"a": 1}}
    assert result["merged"] == {"study": "y", "nested": {"a": 1}, "more": 2}
    assert result["attribute"] == {"a": 1} and result["input"] == {"n": 1}
    assert result["read_only"] == "TypeError"
    assert result["uid"] == result["id"] and result["name"].startswith("cfg-")


@pytest.fixture
def flowdapt_names():
    from flowstage.compat import hook

    hook.install()
    yield
    hook.uninstall()


def test_item1_every_flowdapt_name_real_plugins_import_resolves(flowdapt_names) -> None:
    import importlib

    names = {
        "flowdapt.compute.resources.workflow.context": ["get_run_context"],
        "flowdapt.compute.resources.workflows.context": ["get_run_context"],
        "flowdapt.compute.object_store": ["put", "get", "delete", "exists"],
        "flowdapt.compute.artifacts": ["Artifact", "get_artifact", "check_if_artifact_exists"],
        "flowdapt.compute.artifacts.misc": ["json_to_artifact", "json_from_artifact"],
        "flowdapt.compute.artifacts.dataset.dataframes": ["dataframe_to_artifact"],
        "flowdapt.lib.logger": ["get_logger"],
        "flowdapt.lib.errors": ["ResourceNotFoundError"],
        "flowdapt.builtins.utils": [
            "artifact_name_from_dict",
            "get_data_gap",
            "merge_dataframes",
            "extract_features_and_labels",
        ],
    }
    for module, attributes in names.items():
        loaded = importlib.import_module(module)
        assert loaded is importlib.import_module(
            module.replace("flowdapt", "flowstage.compat.flowdapt", 1)
        )
        for attribute in attributes:
            assert hasattr(loaded, attribute), f"{module}.{attribute}"


def test_item2_object_store_takes_flowdapt_keywords(flowdapt_names) -> None:
    from flowdapt.compute import object_store
    from flowdapt.compute.artifacts.dataset.dataframes import dataframe_to_artifact
    from flowdapt.compute.artifacts.misc import json_from_artifact, json_to_artifact
    from flowdapt.lib.errors import ResourceNotFoundError

    object_store.put("k", {"a": 1}, artifact_only=True, save_artifact_hook=json_to_artifact())
    assert object_store.get(
        "k", namespace="", artifact_only=True, load_artifact_hook=json_from_artifact()
    ) == {"a": 1}

    def upper_to_artifact(artifact, value):
        artifact.new_file("v.txt").write(value.upper())

    object_store.put(
        "u", "abc", namespace="study", artifact_only=True, save_artifact_hook=upper_to_artifact
    )
    loaded = object_store.get(
        "u",
        namespace="study",
        artifact_only=True,
        load_artifact_hook=lambda a: a.get_file("v.txt").read().decode(),
    )
    assert loaded == "ABC"
    object_store.put("plain", [1, 2])
    assert object_store.get("plain") == [1, 2]
    for missing in (
        lambda: object_store.get("nope"),
        lambda: object_store.get(
            "nope", artifact_only=True, load_artifact_hook=json_from_artifact()
        ),
    ):
        with pytest.raises(ResourceNotFoundError):
            missing()
        with pytest.raises(FileNotFoundError):
            missing()
        with pytest.raises(KeyError):
            missing()
    assert callable(dataframe_to_artifact(format="parquet"))
    with pytest.raises(ValueError, match="format"):
        dataframe_to_artifact(format="xlsx")


def test_item4_flowdapt_artifact_methods(flowdapt_names) -> None:
    from flowdapt.compute.artifacts import check_if_artifact_exists, get_artifact

    assert not check_if_artifact_exists("model")
    with pytest.raises(FileNotFoundError):
        get_artifact("model")
    artifact = get_artifact("model", create=True)
    assert artifact.is_empty and check_if_artifact_exists("model")
    artifact.new_file("w.bin", b"1")
    artifact.new_file("w.bin", b"2")  # Flowdapt's default: exist_ok=True
    assert artifact.read("w.bin") == b"2"
    with pytest.raises(RuntimeError), artifact.transaction():
        artifact.new_file("half.bin", b"x")
        raise RuntimeError("failed half way")
    assert [f.name for f in artifact.list_files()] == ["w.bin"]
    assert artifact.delete_file("w.bin") and artifact.is_empty
    artifact.new_file("a", b"")
    artifact.clear()
    assert artifact.is_empty and check_if_artifact_exists("model")
    artifact.delete()
    assert not check_if_artifact_exists("model")


def test_item1_structlog_style_logger(flowdapt_names, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from flowdapt.lib.logger import get_logger

    with caplog.at_level(logging.INFO):
        get_logger("plugin").bind(run="r1").info("Trained", city="Oslo", loss=0.5)
    assert "Trained run='r1' city='Oslo' loss=0.5" in caplog.text
