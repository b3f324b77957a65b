"""Installing the test distributions (tests/sample_plugin, tests/broken_plugin) with pip,
as a user would: shared by the plugin tests and the ``sample_installed`` fixture."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
SAMPLE = HERE / "sample_plugin"
BROKEN = HERE / "broken_plugin"


def _can_build_offline() -> bool:
    """setuptools builds wheels without the network: it ships bdist_wheel (>= 70.1) or
    the ``wheel`` package is installed."""
    try:
        version = tuple(int(p) for p in importlib.metadata.version("setuptools").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False
    if version >= (70, 1):
        return True
    return importlib.util.find_spec("wheel") is not None


def pip_install(*args: str, python: str | None = None) -> None:
    """``pip install --no-deps ARGS`` into this environment (or ``python``'s)."""
    command = [sys.executable, "-m", "pip"]
    if python is not None:
        command += ["--python", python]
    command += ["install", "--no-deps", "--disable-pip-version-check", "--quiet"]
    if _can_build_offline():
        command.append("--no-build-isolation")
    done = subprocess.run(
        [*command, *args], check=False, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        pytest.fail(f"pip install {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    importlib.invalidate_caches()


def _installed_copy_matches(distribution: str, source: Path) -> bool:
    """Whether ``distribution`` is installed at the source's version with the same files."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    version = re.search(r'^version = "(.+)"', (source / "pyproject.toml").read_text(), re.MULTILINE)
    if version is None or dist.version != version.group(1):
        return False
    src = source / "src"
    wanted = {
        p.relative_to(src).as_posix()
        for p in src.rglob("*")
        if p.suffix in (".py", ".yaml") and "egg-info" not in p.as_posix()
    }
    installed = {f.as_posix(): f for f in dist.files or [] if f.as_posix() in wanted}
    if set(installed) != wanted:
        return False
    return all(
        Path(str(f.locate())).read_bytes() == (src / name).read_bytes()
        for name, f in installed.items()
    )


def install_sample() -> None:
    """flowstage-sample, installed into this environment unless the same copy already is."""
    if not _installed_copy_matches("flowstage-sample", SAMPLE):
        pip_install("--force-reinstall", str(SAMPLE))
