"""The store under hostile input and concurrent writers: manifests that point outside the
store, file permissions in the app directory, and one artifact written from many threads
and processes at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowstage import object_store
from flowstage.artifacts import get_artifact, new_artifact, remove_artifact
from flowstage.core.errors import ObjectStoreError

# manifests ---------------------------------------------------------------------------


def tamper(key: str, field: object) -> Path:
    """Point artifact ``key``'s object at ``field``; a victim file outside the store."""
    object_store.put(key, {"v": 1}, strategy="artifact")
    artifact = get_artifact(key)
    manifest_path = Path(artifact.path, ".artifact.json")
    manifest = json.loads(manifest_path.read_text())
    manifest["object"]["file"] = field
    manifest_path.write_text(json.dumps(manifest))
    return manifest_path


@pytest.mark.parametrize(
    "field",
    ["../../../victim", "ABSOLUTE", "sub/.value-x.pkl", "..", ".artifact.json", 7, None],
)
def test_a_manifest_cannot_name_a_file_outside_its_artifact(app_home: Path, field: object) -> None:
    victim = app_home / "victim"  # <home>/artifacts/default/model/../../../victim
    victim.write_bytes(b"precious")
    tamper("model", str(victim) if field == "ABSOLUTE" else field)
    with pytest.raises(ObjectStoreError) as get_error:
        object_store.get("model", strategy="artifact")
    message = str(get_error.value)
    assert "artifact 'model' in namespace 'default'" in message
    assert "'object.file'" in message and "nothing was read or removed" in message
    with pytest.raises(ObjectStoreError, match="'object.file'"):
        object_store.put("model", {"v": 2}, strategy="artifact")
    with pytest.raises(ObjectStoreError, match="'object.file'"):
        object_store.delete("model", strategy="artifact")
    assert victim.read_bytes() == b"precious"
    assert remove_artifact("model")  # the way out the message names works
    assert victim.read_bytes() == b"precious"


def test_a_manifest_whose_object_is_not_a_mapping_is_refused() -> None:
    new_artifact("odd")
    manifest_path = Path(get_artifact("odd").path, ".artifact.json")
    manifest = json.loads(manifest_path.read_text())
    manifest["object"] = "../../victim"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ObjectStoreError, match="field 'object' is '../../victim'"):
        object_store.get("odd", strategy="artifact")
