"""A store that cannot be written says why (read-only, full disk, a value out of range)
and calls the file corrupt only when it is: the advice to move the file away must never
reach a history that is merely unwritable. Real filesystems: small tmpfs mounts."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_process import cli

WORKFLOW = """\
kind: workflow
metadata: {name: one}
spec:
  stages:
    - name: only
      target: teststages.basic.one
"""


@pytest.fixture
def disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An app dir on its own 2 MiB tmpfs holding a store with one run (needs root)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs: {done.stderr.decode().strip()}")
    monkeypatch.setenv("FLOWSTAGE_HOME", str(mount))
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    try:
        assert cli("run", str(tmp_path / "wf.yaml")).returncode == 0
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def assert_not_called_corrupt(stderr: str) -> None:
    assert "corrupt" not in stderr and "move it away" not in stderr, stderr
    assert "Traceback" not in stderr, stderr


def test_a_read_only_store_says_so(disk: Path, tmp_path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    done = cli("apply", "-p", str(tmp_path / "wf.yaml"))
    assert done.returncode == 2
    assert "read-only filesystem" in done.stderr and "not damaged" in done.stderr
    assert_not_called_corrupt(done.stderr)


def test_a_full_disk_says_so(disk: Path, tmp_path: Path) -> None:
    filler = disk / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    done = cli("apply", "-p", str(tmp_path / "wf.yaml"))
    assert done.returncode == 2
    assert "disk holding the store is full" in done.stderr
    assert_not_called_corrupt(done.stderr)


def test_a_page_out_of_range_says_so() -> None:
    done = cli("runs", "--page", "999999999999999999999")
    assert done.returncode == 2
    assert "out of range" in done.stderr
    assert_not_called_corrupt(done.stderr)
