"""Artifacts on a real full disk (a 1 MiB tmpfs): a put that does not fit is an
``ObjectStoreError`` saying so, and leaves the disk as it was."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flowstage import object_store
from flowstage.core.errors import ObjectStoreError


@pytest.fixture
def small_disk(small_tmpfs: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``artifacts.url`` on a 1 MiB tmpfs."""
    monkeypatch.setenv("FLOWSTAGE__ARTIFACTS__URL", str(small_tmpfs))
    return small_tmpfs


def files_in(folder: Path) -> dict[str, int]:
    """Every file and folder with its size, less the lock files: there are at most 256,
    shared by all artifacts, and kept (empty) for the next writer."""
    found = {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*")}
    return {name: size for name, size in found.items() if not name.startswith(".locks")}


def free_bytes(folder: Path) -> int:
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


@pytest.mark.parametrize("key", ["new", "kept"])
def test_an_artifact_too_large_for_the_disk_fails_and_leaves_no_partial_file(
    small_disk: Path, key: str
) -> None:
    object_store.put("kept", b"old" * 1000, strategy="artifact")
    before, free = files_in(small_disk), free_bytes(small_disk)
    with pytest.raises(ObjectStoreError) as info:
        object_store.put(key, os.urandom(2 * 1024 * 1024), strategy="artifact")
    message = str(info.value)
    assert f"{key!r}" in message and "No space left on device" in message, message
    assert files_in(small_disk) == before  # no partial or temporary file, no new folder
    assert free_bytes(small_disk) == free
    assert object_store.get("kept", strategy="artifact") == b"old" * 1000
    object_store.put("small", b"fits", strategy="artifact")  # the store still works
    assert object_store.get("small", strategy="artifact") == b"fits"
