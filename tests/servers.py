"""A real ``flowstage serve`` (or ``flowstage ui``) in a subprocess on a free loopback port,
for the service and dashboard tests: started, waited for, stopped with SIGTERM (or killed)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
SRC = HERE.parent / "src"
WORKFLOWS = HERE / "service_workflows"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_env(home: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWSTAGE__")}
    env["FLOWSTAGE_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(HERE)])
    env.update({f"FLOWSTAGE__SERVICE__{k.upper()}": v for k, v in settings.items()})
    return env


class Server:
    """One ``python -m flowstage serve`` process (``command="ui"``: ``flowstage ui``)."""

    def __init__(
        self, home: Path, port: int | None = None, *, command: str = "serve", **settings: str
    ) -> None:
        self.home = home
        self.command = command
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = settings.get("api_token")
        self.log = home / f"serve-{self.port}.log"
        home.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "flowstage", command, "--port", str(self.port)],
                env=service_env(home, **settings),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"flowstage {self.command} exited: {self.log.read_text()}")
            try:
                self.request("GET", "/")
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        raise RuntimeError(f"flowstage {self.command} did not answer: {self.log.read_text()}")

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """``(status, decoded JSON body)``; errors are answers too, not exceptions.
        ``headers`` replace the default ones (a JSON content type)."""
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        for name, value in ({"Content-Type": "application/json"} | (headers or {})).items():
            request.add_header(name, value)
        token = token if token is not None else self.token
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, text = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read()
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text.decode()

    def apply(self, name: str, folder: Path = WORKFLOWS) -> dict[str, Any]:
        """Apply ``folder/name.yaml`` (a workflow, config or trigger rule) through the API."""
        import yaml

        document = yaml.safe_load((folder / f"{name}.yaml").read_text())
        kind = {"workflow": "workflows", "config": "configs", "trigger_rule": "triggers"}
        status, body = self.request("POST", f"/{kind[document['kind']]}/", document)
        assert status in (200, 201), body
        return dict(body)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)
