"""Packing the stage code that is sent to workers on other hosts (core/sources.py)."""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path

import pytest

from flowstage.core import sources
from flowstage.core.errors import UserError
from flowstage.core.sources import pack_sources


def names_in(bundle: sources.SourceBundle) -> list[str]:
    return sorted(zipfile.ZipFile(io.BytesIO(bundle.data)).namelist())


def test_workflow_folder_and_user_modules_are_packed(tmp_path: Path):
    flow, home = tmp_path / "flow", tmp_path / "home"
    (flow / "pkg").mkdir(parents=True)
    (flow / "stages.py").write_text("X = 1\n")
    (flow / "pkg" / "__init__.py").write_text("")
    (flow / "data.csv").write_text("a,b\n")
    for skipped in (".git", "__pycache__", "venv"):
        (flow / skipped).mkdir()
        (flow / skipped / "hidden.py").write_text("")
    (flow / "venv" / "pyvenv.cfg").write_text("home = /usr\n")
    (home / "user_modules").mkdir(parents=True)
    (home / "user_modules" / "shared.py").write_text("")
    bundle = pack_sources(str(flow), str(home))
    assert bundle is not None
    assert names_in(bundle) == ["pkg/__init__.py", "stages.py", "user_modules/shared.py"]
    assert bundle.modules == ("pkg", "stages", "user_modules")


def test_equal_code_gives_an_equal_digest_and_a_change_a_new_one(tmp_path: Path):
    (tmp_path / "stages.py").write_text("X = 1\n")
    first = pack_sources(str(tmp_path), str(tmp_path / "home"))
    again = pack_sources(str(tmp_path), str(tmp_path / "home"))
    (tmp_path / "stages.py").write_text("X = 2\n")
    changed = pack_sources(str(tmp_path), str(tmp_path / "home"))
    assert first is not None and again is not None and changed is not None
    assert first.digest == again.digest != changed.digest


def test_nothing_to_send(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("")
    assert pack_sources(str(tmp_path), str(tmp_path / "home")) is None
    assert pack_sources(None, str(tmp_path / "home")) is None


def test_too_many_files_names_the_folder_and_the_way_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(sources, "MAX_FILES", 3)
    for i in range(5):
        (tmp_path / f"m{i}.py").write_text("")
    with pytest.raises(UserError) as info:
        pack_sources(str(tmp_path), str(tmp_path / "home"))
    message = str(info.value)
    assert (
        str(tmp_path) in message
        and "more than 3 Python files" in message
        and "upload_code: false" in message
    )


def test_too_many_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sources, "MAX_BYTES", 1024 * 1024)
    (tmp_path / "big.py").write_text("#" * (1024 * 1024 + 1))
    with pytest.raises(UserError, match="more than 1 MB of Python files"):
        pack_sources(str(tmp_path), str(tmp_path / "home"))


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX owners and modes")
def test_code_folder_is_private_and_not_used_if_others_may_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    root = sources._code_root(tmp_path)
    assert root.name == f"flowstage-code-{os.getuid()}"
    assert root.stat().st_mode & 0o777 == 0o700
    root.chmod(0o777)
    fallback = sources._code_root(tmp_path)
    assert fallback.name.startswith(f"flowstage-code-{os.getuid()}-")
    assert fallback.stat().st_mode & 0o777 == 0o700
    assert "others may write to it; using" in caplog.text
    assert sources._code_root(tmp_path) == fallback  # found again, not one per call


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs chown")
def test_code_folder_taken_by_another_user_gives_a_private_one(tmp_path: Path):
    taken = tmp_path / f"flowstage-code-{os.getuid()}"
    taken.mkdir(mode=0o755)
    os.chown(taken, 12345, 12345)  # another user made it first; we cannot remove it
    (tmp_path / f"{taken.name}-planted").mkdir(mode=0o700)
    os.chown(tmp_path / f"{taken.name}-planted", 12345, 12345)
    root = sources._code_root(tmp_path)
    assert root.parent == tmp_path and root.name.startswith(f"{taken.name}-")
    assert root.name != f"{taken.name}-planted"
    info = root.stat()
    assert info.st_uid == os.getuid() and info.st_mode & 0o777 == 0o700


@pytest.fixture
def code_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """This process as a worker host whose temporary folder is ``tmp_path``; the code
    bundle it used before (if any) is active again afterwards."""
    import sys
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    saved_active, saved_path = sources._active, list(sys.path)
    yield sources._code_root(tmp_path)
    sources._active = saved_active
    sys.path[:] = saved_path


def _bundle(tmp_path: Path, name: str, text: str) -> sources.SourceBundle:
    flow = tmp_path / name
    flow.mkdir()
    (flow / f"{name}.py").write_text(text)
    bundle = pack_sources(str(flow), str(tmp_path / "home"))
    assert bundle is not None
    return bundle


def test_code_versions_unused_for_days_are_removed_when_a_new_one_arrives(
    tmp_path: Path, code_host: Path
):
    def days_ago(days: float) -> float:
        return time.time() - days * 86400

    old, recent, partial = code_host / "a", code_host / "b", code_host / "c.123.456.part"
    for folder, age in ((old, 8), (recent, 6), (partial, 8)):
        (folder / "pkg").mkdir(parents=True)
        (folder / "pkg" / "mod.py").write_text("")
        os.utime(folder, (days_ago(age), days_ago(age)))
    bundle = _bundle(tmp_path, "stages_v1", "X = 1\n")
    sources.use_sources(bundle)
    assert sorted(p.name for p in code_host.iterdir()) == sorted([bundle.digest, "b"])


def test_a_process_marks_its_code_as_used_and_unpacks_it_again_if_it_was_removed(
    tmp_path: Path, code_host: Path, monkeypatch: pytest.MonkeyPatch
):
    import shutil

    bundle = _bundle(tmp_path, "stages_v2", "X = 2\n")
    sources.use_sources(bundle)
    folder = code_host / bundle.digest
    week_ago = time.time() - 7 * 86400
    os.utime(folder, (week_ago, week_ago))
    sources.use_sources(bundle)  # marked at most once per MARK_USED_SECONDS
    assert folder.stat().st_mtime == pytest.approx(week_ago)
    monkeypatch.setattr(sources, "MARK_USED_SECONDS", 0.0)
    sources.use_sources(bundle)
    sources.use_sources(bundle)
    assert folder.stat().st_mtime > week_ago + 86400
    shutil.rmtree(folder)  # removed by another host process all the same
    sources.use_sources(bundle)
    assert (folder / "stages_v2.py").read_text() == "X = 2\n"
