"""What the distribution promises its users: a version and type information."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import flowstage


def test_version_flag_prints_the_installed_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flowstage", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == f"flowstage {importlib.metadata.version('flowstage')}"
    assert flowstage.__version__ == importlib.metadata.version("flowstage")


def test_the_package_is_marked_typed() -> None:
    assert (Path(flowstage.__file__).parent / "py.typed").is_file()
