"""``Artifact.transaction()`` of the Flowdapt compatibility layer: a block that raises
leaves the artifact as it found it (created files gone, replaced and deleted files and
the metadata back), on a local disk and on an fsspec store without hard links."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, app_home: Path) -> str:
    if request.param == "memory":
        url = f"memory://txn-{id(request)}"
        (app_home / "settings.yaml").write_text(yaml.safe_dump({"artifacts": {"url": url}}))
    return str(request.param)


def contents(artifact) -> dict[str, bytes]:
    return {f.name: f.read() for f in artifact.list_files()}


def test_a_failed_block_undoes_creates_replaces_deletes_and_metadata(store: str) -> None:
    from flowstage.compat.flowdapt.compute.artifacts import get_artifact

    artifact = get_artifact("model", create=True)
    assert artifact.uri.startswith("memory://" if store == "memory" else "file://")
    artifact.new_file("weights.bin", b"v1")
    artifact.new_file("notes.txt", "keep me")
    artifact.set_meta("epoch", 1)
    before = contents(artifact)
    with pytest.raises(RuntimeError), artifact.transaction():
        artifact.new_file("weights.bin", b"v2")  # replaced
        artifact.get_file("notes.txt").write("changed")  # rewritten
        artifact.new_file("half.bin", b"x")  # created
        artifact.set_meta("epoch", 2)
        assert artifact.read("weights.bin") == b"v2"  # changes show inside the block
        artifact.delete_file("notes.txt")  # deleted
        raise RuntimeError("failed half way")
    assert contents(artifact) == before
    assert artifact.get_meta("epoch") == 1


def test_a_failed_block_brings_back_a_deleted_artifact(store: str) -> None:
    from flowstage.compat.flowdapt.compute.artifacts import check_if_artifact_exists, get_artifact

    artifact = get_artifact("scaler", create=True)
    artifact.new_file("a.bin", b"a")
    artifact.set_meta("kind", "minmax")
    with pytest.raises(RuntimeError), artifact.transaction():
        artifact.delete()
        assert not check_if_artifact_exists("scaler")
        raise RuntimeError("failed after the delete")
    again = get_artifact("scaler")
    assert contents(again) == {"a.bin": b"a"} and again.get_meta("kind") == "minmax"


def test_a_block_that_ends_keeps_its_changes_and_leaves_nothing_aside(
    store: str, app_home: Path
) -> None:
    from flowstage.compat.flowdapt.compute.artifacts import get_artifact

    artifact = get_artifact("kept", create=True)
    artifact.new_file("old.bin", b"old")
    with artifact.transaction():
        artifact.new_file("old.bin", b"new")
        artifact.new_file("more.bin", b"more")
    assert contents(artifact) == {"more.bin": b"more", "old.bin": b"new"}
    if store == "local":
        leftovers = [p for p in app_home.rglob("*") if ".tmp-" in str(p)]
        assert leftovers == []
