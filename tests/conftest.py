"""Shared fixtures: an isolated app directory per test, and one executor per engine
started once per test session (``executor`` runs a test on every installed engine)."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

#: the dashboard's browser, page and server fixtures (tests/browser.py)
pytest_plugins = ["browser"]

HERE = Path(__file__).parent
STAGES_DIR = HERE / "teststages"

#: engines the behaviour suite runs on; dask and ray are skipped without their extra
ENGINES = {
    "threads": ({"name": "local", "max_workers": 4}, None),
    "processes": ({"name": "local", "processes": True, "max_workers": 2}, None),
    "dask": ({"name": "dask", "n_workers": 2}, "distributed"),
    "ray": ({"name": "ray", "num_cpus": 2}, "ray"),
}


@pytest.fixture(autouse=True)
def app_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own FLOWSTAGE_HOME (settings, store, artifacts, user_modules)."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("FLOWSTAGE_HOME", str(home))
    for key in list(os.environ):
        if key.startswith("FLOWSTAGE__"):
            monkeypatch.delenv(key)
    return home


@pytest.fixture(scope="session", autouse=True)
def flowdapt_compat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path | None]:
    """The ``flowdapt`` compatibility hook in this process and, through a sitecustomize on
    PYTHONPATH, in every worker process started after (so before any engine starts: its
    workers would not have it); None where the real flowdapt is installed."""
    from flowstage.compat import hook

    if hook.real_flowdapt() is not None:
        yield None
        return
    site = tmp_path_factory.mktemp("compat_site")
    (site / "sitecustomize.py").write_text(hook.PTH_LINE)
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), previous]))
    sys.path.append(str(site))  # Ray's workers get the driver's sys.path as PYTHONPATH
    hook.install()
    yield site
    hook.uninstall()
    sys.path.remove(str(site))


@pytest.fixture(scope="session", autouse=True)
def stage_modules() -> None:
    """Test stage modules import as ``teststages.<name>`` in the driver and, through
    PYTHONPATH, in every worker process the engines start."""
    sys.path.insert(0, str(HERE))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(HERE), os.environ.get("PYTHONPATH")])
    )


@pytest.fixture(scope="session")
def sample_installed(stage_modules: None) -> None:
    """flowstage-sample (tests/sample_plugin), pip-installed into this environment, and
    the process's plugin manager rebuilt so it is seen."""
    from flowstage.core.plugin_manager import set_default_plugins
    from installs import install_sample

    install_sample()
    set_default_plugins(None)


_started: dict[str, object] = {}


def interruptible(command: list[str]) -> list[str]:
    """``command`` taking Ctrl-C (SIGINT) as it would from a terminal, also when the tests
    themselves run in the background, where the shell makes children ignore SIGINT. (The
    command keeps the process id: it is exec'd after SIGINT is back to its default.)"""
    shim = (
        "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    return [sys.executable, "-c", shim, *command]


def _engine(name: str):
    spec, module = ENGINES[name]
    if module and importlib.util.find_spec(module) is None:
        pytest.skip(f"{name} is not installed (pip install 'flowstage[{name}]')")
    if name not in _started:
        from flowstage import create_executor

        executor = create_executor(dict(spec))
        executor.start()
        _started[name] = executor
    return _started[name]


@pytest.fixture(params=list(ENGINES))
def executor(request: pytest.FixtureRequest):
    """A started executor of each engine, shared by the whole session."""
    return _engine(request.param)


@pytest.fixture
def local_executor():
    return _engine("threads")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for executor in _started.values():
        try:
            executor.close()  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - best effort at exit; the other engines must still close
            pass
    _started.clear()


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs, for full-disk faults (needs root: skipped where mounting is not
    allowed); unmounted lazily at the end, since a store on it may still be open."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
