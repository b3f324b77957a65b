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
