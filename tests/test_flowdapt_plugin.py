"""A plugin written for Flowdapt (tests/flowdapt_style_plugin: stages importing
``flowdapt.*``, a config, a trigger rule, object store hooks, artifacts, a parameterized
chain, a first-run ``FileNotFoundError`` branch), pip-installed and run unchanged on
every executor with equal results (issue 15, items 1-5 and the plugin deliverable).

The ``flowdapt`` import name comes from the compatibility hook: installed in this
process, and for worker processes through a ``sitecustomize`` on ``PYTHONPATH`` that
runs the same line ``flowstage compat flowdapt install`` writes into site-packages (the
shared environment's site-packages is left alone): the session fixture ``flowdapt_compat``
in conftest.py, set up before any engine starts its workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from installs import HERE, pip_install

PLUGIN = HERE / "flowdapt_style_plugin"


@pytest.fixture(scope="session")
def flowdapt_plugin(flowdapt_compat: Path | None, stage_modules: None) -> Path:
    """flowdapt-style-plugin pip-installed; the folder its YAML files are in."""
    if flowdapt_compat is None:
        pytest.skip("the real flowdapt is installed here")
    from flowstage.core.plugin_manager import set_default_plugins

    pip_install("--force-reinstall", str(PLUGIN))
    set_default_plugins(None)
    import flowdapt_style_plugin

    return Path(flowdapt_style_plugin.__file__).parent


def run_twice(folder: Path, executor: Any) -> tuple[Any, Any]:
    from flowstage import run_workflow
    from flowstage.core.plugin_manager import default_plugins
    from flowstage.state.resources import apply_path

    apply_path(folder, default_plugins(), recursive=True)
    return (
        run_workflow("city_totals", executor=executor),
        run_workflow("city_totals", executor=executor),
    )


#: names as Flowdapt's ``artifact_name_from_dict`` makes them (values only, URL-quoted,
#: ``%`` dropped: "New York" -> "New%20York" -> "New20York")
EXPECTED_TOTALS = {"Oslo": 24, "Lima": 24, "New20York": 48}


def test_plugin_runs_unchanged_on_every_executor(flowdapt_plugin: Path, executor: Any) -> None:
    first, second = run_twice(flowdapt_plugin, executor)
    common = {
        "totals": EXPECTED_TOTALS,
        "keys": ["OSLO", "LIMA", "NEW20YORK"],  # item 8: a dict maps over keys
        "stored_totals": EXPECTED_TOTALS,
        "empty": False,
    }
    assert first == {**common, "downloaded": 3}  # first run: FileNotFoundError branches
    assert second == {**common, "downloaded": 0}  # then the hook-written artifacts load


def flowstage_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowstage.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "250"},
    )


def test_flowdapt_plugins_are_listed_and_their_folder_applies(flowdapt_plugin: Path) -> None:
    # JSON: the table wraps long cells at the width of the terminal there is (or is not)
    listed = flowstage_cli("plugins", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    [row] = [r for r in json.loads(listed.stdout) if r["name"] == "flowdapt_style_plugin"]
    assert row["distribution"] == "flowdapt-style-plugin" and row["status"] == "flowdapt"
    assert f"flowstage apply -p {flowdapt_plugin}" in row["error"]
    applied = flowstage_cli("apply", "-p", str(flowdapt_plugin))
    assert applied.returncode == 0, applied.stderr
    assert sorted(applied.stdout.split()) == sorted(
        [
            "workflow/city_totals",
            "created",
            "config/flowdapt_style_main",
            "created",
            "trigger_rule/style_retrain",
            "created",
        ]
    )
    validated = flowstage_cli("validate", str(flowdapt_plugin / "workflows" / "city_totals.yaml"))
    assert validated.returncode == 0, validated.stderr
    ran = flowstage_cli("run", "city_totals", "--format", "json", "--wait", "--disable-progress")
    assert ran.returncode == 0, ran.stderr
    assert '"downloaded": 3' in ran.stdout


def test_compat_command_installs_a_pth_and_refuses_when_flowdapt_is_real(
    tmp_path: Path, flowdapt_compat: Path
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    done = flowstage_cli("compat", "flowdapt", "install", "--site-packages", str(site))
    assert done.returncode == 0, done.stderr
    pth = site / "flowstage-compat-flowdapt.pth"
    assert pth.exists()
    status = flowstage_cli("compat", "flowdapt", "status", "--site-packages", str(site))
    assert "installed: True" in status.stdout
    # a fresh interpreter that reads the .pth (as site-packages is read) gets flowdapt
    code = (
        f"import site; site.addsitedir({str(site)!r}); "
        "from flowdapt.compute import object_store; print(object_store.__name__)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p.endswith("src"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "flowstage.compat.flowdapt.compute.object_store", out.stderr
    # a real flowdapt makes the hook step aside, and install refuses
    real = tmp_path / "real"
    (real / "flowdapt").mkdir(parents=True)
    (real / "flowdapt" / "__init__.py").write_text("REAL = True\n")
    env["PYTHONPATH"] = os.pathsep.join([str(real), env["PYTHONPATH"]])
    code = f"import site; site.addsitedir({str(site)!r}); import flowdapt; print(flowdapt.REAL)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "True", out.stderr
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowstage.cli",
            "compat",
            "flowdapt",
            "install",
            "--site-packages",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert refused.returncode == 2 and "real Flowdapt is installed" in refused.stderr
    done = flowstage_cli("compat", "flowdapt", "uninstall", "--site-packages", str(site))
    assert done.returncode == 0 and not pth.exists()
