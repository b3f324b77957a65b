"""Flowdapt's own client, ``flowctl`` 0.1.4, against ``flowstage serve``: it pins older
typer, rich and click, so it lives in a venv of its own (made once, then reused)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the service needs the 'service' extra")

from servers import WORKFLOWS, Server

pytestmark = pytest.mark.timeout(600)

FLOWCTL_VERSION = "0.1.4"


@pytest.fixture(scope="session")
def flowctl_bin() -> Path:
    """``flowctl`` from a venv of its own (cached between sessions)."""
    venv = Path.home() / ".cache" / "flowstage-tests" / f"flowctl-{FLOWCTL_VERSION}"
    binary = venv / "bin" / "flowctl"
    if binary.exists():
        return binary
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    done = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            f"flowctl=={FLOWCTL_VERSION}",
        ],
        capture_output=True,
        text=True,
        timeout=540,
    )
    if done.returncode != 0:
        pytest.skip(
            f"cannot install flowctl {FLOWCTL_VERSION} (PyPI unreachable?): "
            f"{done.stderr.strip().splitlines()[-1:]}"
        )
    return binary


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("flowctl-home"))
    yield running
    assert running.stop() == 0, running.log.read_text()


def flowctl(binary: Path, server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWSTAGE", "PYTHON"))}
    (server.home / "flowctl").mkdir(exist_ok=True)
    env.update(FLOWCTL__APP_DIR=str(server.home / "flowctl"), COLUMNS="200", NO_COLOR="1")
    return subprocess.run(
        [str(binary), "--server", server.url, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_flowctl_apply_get_inspect_run_delete(flowctl_bin: Path, server: Server) -> None:
    for name in ("echo", "fail", "remember", "recall", "sleep", "config"):
        done = flowctl(flowctl_bin, server, "apply", "-p", str(WORKFLOWS / f"{name}.yaml"))
        assert done.returncode == 0, done.stdout + done.stderr
    assert "[workflow/svc_echo] created" in flowctl(
        flowctl_bin, server, "apply", "-p", str(WORKFLOWS / "echo.yaml")
    ).stdout.replace("updated", "created")
    listed = flowctl(flowctl_bin, server, "get", "workflows")
    assert listed.returncode == 0 and "svc_echo" in listed.stdout, listed.stderr
    assert "svc_config" in flowctl(flowctl_bin, server, "get", "configs").stdout
    inspected = flowctl(flowctl_bin, server, "inspect", "workflow", "svc_echo")
    assert inspected.returncode == 0 and "teststages.service.echo" in inspected.stdout

    done = flowctl(flowctl_bin, server, "run", "svc_echo", "--value", "5")
    assert "[FINISHED]: 5" in done.stdout, done.stdout + done.stderr
    done = flowctl(flowctl_bin, server, "run", "svc_fail")
    assert "[FAILED]" in done.stdout and "svc boom" in done.stdout, done.stdout
    done = flowctl(flowctl_bin, server, "run", "svc_sleep", "--seconds", "0.2", "--no-wait")
    assert "[PENDING]" in done.stdout, done.stdout + done.stderr

    # two runs share an object through the warm executor's cluster memory
    assert "[FINISHED]" in flowctl(flowctl_bin, server, "run", "svc_remember").stdout
    assert "[FINISHED]: abc" in flowctl(flowctl_bin, server, "run", "svc_recall").stdout

    runs = flowctl(flowctl_bin, server, "get", "workflow_runs", "svc_echo", "--format", "json")
    assert runs.returncode == 0, runs.stderr
    assert json.loads(runs.stdout)[0]["result"] == 5

    status = flowctl(flowctl_bin, server, "status")
    assert status.returncode == 0 and "executor" in status.stdout, status.stdout + status.stderr

    assert flowctl(flowctl_bin, server, "delete", "workflow", "svc_fail").returncode == 0
    assert "svc_fail" not in flowctl(flowctl_bin, server, "get", "workflows").stdout
