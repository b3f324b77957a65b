"""``flowstage serve`` as a real uvicorn server on 127.0.0.1, driven over HTTP: runs,
resources, errors, authentication, the drain on SIGTERM and recovery after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the service needs the 'service' extra")
pytest.importorskip("uvicorn", reason="the service needs the 'service' extra")

from servers import Server, free_port, service_env

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One service for the module, with the test workflows applied."""
    running = Server(tmp_path_factory.mktemp("service-home"), max_concurrent_runs="2")
    for name in ("echo", "fail", "sleep", "remember", "recall", "chain", "cached"):
        running.apply(name)
    yield running
    assert running.stop() == 0, running.log.read_text()


def run(server: Server, workflow: str, body: object = None, query: str = "") -> dict:
    status, record = server.request("POST", f"/workflows/{workflow}/run{query}", body)
    assert status == 200, record
    return dict(record)


def wait_for(server: Server, uid: str, states: tuple[str, ...], timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, record = server.request("GET", f"/workflows/run/{uid}")
        if status == 200 and record["state"] in states:
            return dict(record)
        time.sleep(0.05)
    raise AssertionError(f"run {uid} never reached {states}")


def test_ping_status_and_docs(server: Server) -> None:
    assert server.request("GET", "/") == (
        200,
        {"app": "flowstage", "version": "0.1.0", "api_version": "v1"},
    )
    status, body = server.request("GET", "/status")
    assert status == 200
    assert body["services"]["executor"] == {"status": "OK", "name": "local"}
    status, spec = server.request("GET", "/openapi.json")
    assert status == 200 and "/workflows/{identifier}/run" in spec["paths"]


def test_run_waits_and_returns_the_record(server: Server) -> None:
    record = run(server, "svc_echo", {"value": 5})
    assert record["state"] == "finished" and record["result"] == 5
    assert record["source"] == "api" and record["workflow"] == "svc_echo"
    assert record["uid"].endswith(record["name"])
    assert server.request("GET", f"/workflows/run/{record['uid']}") == (200, record)


def test_a_failed_run_reports_exception_name_and_message(server: Server) -> None:
    record = run(server, "svc_fail")
    assert record["state"] == "failed"
    assert record["result"] == ["ValueError", "svc boom"]


def test_no_wait_then_poll(server: Server) -> None:
    record = run(server, "svc_sleep", {"seconds": 0.3}, "?wait=false")
    assert record["state"] in ("pending", "running")
    assert wait_for(server, record["uid"], ("finished",))["result"] == 0.3


def test_runs_share_cluster_memory(server: Server) -> None:
    """The warm executor: an object put by one run is there for the next."""
    assert run(server, "svc_remember", {"value": [1, 2]})["state"] == "finished"
    record = run(server, "svc_recall")
    assert record["state"] == "finished", record
    assert record["result"] == [1, 2]


def test_queued_runs_are_pending_and_all_finish(server: Server) -> None:
    records = [run(server, "svc_sleep", {"seconds": 0.4}, "?wait=false") for _ in range(4)]
    time.sleep(0.15)
    states = [server.request("GET", f"/workflows/run/{r['uid']}")[1]["state"] for r in records]
    assert states.count("pending") >= 2  # max_concurrent_runs is 2
    status, metrics = server.request("GET", "/metrics")
    assert status == 200 and "flowstage_queue_depth" in metrics
    for r in records:
        assert wait_for(server, r["uid"], ("finished",))["state"] == "finished"
    status, listed = server.request("GET", "/workflows/svc_sleep/run?limit=3")
    assert status == 200 and len(listed) == 3
    assert listed[0]["uid"] == records[-1]["uid"]  # newest first


def test_errors_are_4xx_with_a_message(server: Server) -> None:
    status, body = server.request("POST", "/workflows/nope/run", {})
    assert status == 404 and "no workflow file or workflow named 'nope'" in body["detail"]
    status, body = server.request("POST", "/workflows/svc_echo/run", raw=b"{bad json")
    assert status == 400 and "not valid JSON" in body["detail"]
    status, body = server.request("POST", "/workflows/svc_echo/run", [1, 2])
    assert status == 422 and "JSON object" in body["detail"]
    status, body = server.request("POST", "/workflows/", {"kind": "workflow", "metadata": {}})
    assert status == 422 and "metadata" in body["detail"]
    assert too_big(server) == 413  # answered from the headers, before the body is sent


def test_requests_a_web_page_could_forge_are_refused(server: Server) -> None:
    # a page whose domain now points at 127.0.0.1 (DNS rebinding) sends its own Host
    status, body = server.request("GET", "/workflows/", headers={"Host": "evil.example:80"})
    assert status == 421 and "evil.example" in body["detail"]
    # a cross-site form or fetch can POST text without a CORS preflight, not JSON
    for kind in ("text/plain", "application/x-www-form-urlencoded"):
        status, body = server.request(
            "POST", "/workflows/svc_echo/run", raw=b"", headers={"Content-Type": kind}
        )
        assert status == 415 and "JSON" in body["detail"], kind
    status, _ = server.request("GET", "/workflows/", headers={"Host": f"localhost:{server.port}"})
    assert status == 200


def test_unbounded_or_hostile_requests_get_a_4xx(server: Server) -> None:
    for limit in (0, -1, 10**6):
        status, body = server.request("GET", f"/runs?limit={limit}")
        assert status == 422 and "limit must be between" in body["detail"], limit
    deep = b"[" * 100_000 + b"]" * 100_000
    status, body = server.request("POST", "/workflows/svc_echo/run", raw=deep)
    assert status == 400 and "nested too deeply" in body["detail"]


def test_retry_a_run_over_http_and_from_the_cli(server: Server, tmp_path: Path) -> None:
    from teststages.resume import calls

    marks, flag = tmp_path / "marks", tmp_path / "flag"
    marks.mkdir()
    flag.touch()
    failed = run(server, "svc_chain", {"marks": str(marks), "flag": str(flag)})
    assert failed["state"] == "failed" and "flag file" in failed["error"]
    retry = [sys.executable, "-m", "flowstage", "runs", "retry", failed["id"]]
    env = service_env(tmp_path / "client-home")
    done = subprocess.run([*retry, "--server", server.url], env=env, capture_output=True, text=True)
    assert done.returncode == 1 and "flag file" in done.stderr  # the flag is still there
    flag.unlink()
    status, pending = server.request("POST", f"/runs/{failed['uid']}/retry?wait=false")
    assert status == 200 and pending["retry_of"] == failed["id"], pending
    record = wait_for(server, pending["uid"], ("finished", "failed"))
    assert record["state"] == "finished" and record["result"] == 20, record
    assert record["retry_of"] == failed["id"] and record["workflow"] == "svc_chain"
    assert (calls(marks, "first"), calls(marks, "second"), calls(marks, "third")) == (1, 1, 3)
    env["FLOWSTAGE__SERVICE__URL"] = server.url  # the setting instead of --server
    done = subprocess.run([*retry, "--format", "json"], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "20", done.stderr
    assert calls(marks, "first") == 1


def test_the_cache_mode_reaches_service_runs(server: Server, tmp_path: Path) -> None:
    from teststages.caching import calls

    body = {"marks": str(tmp_path), "n": 3}
    for query, called in (("", 1), ("", 1), ("?cache=off", 2), ("?cache=refresh", 3), ("", 3)):
        record = run(server, "svc_cached", body, query)
        assert record["state"] == "finished" and len(record["result"]) == 3, record
        assert calls(tmp_path, "numbers") == called, query
    status, refused = server.request("POST", "/workflows/svc_cached/run?cache=maybe", body)
    assert status == 400 and "expected True, False or 'refresh'" in refused["detail"], refused
    command = [sys.executable, "-m", "flowstage", "run", "svc_cached", "--server", server.url]
    inputs = ["--marks", str(tmp_path), "--n", "3", "--format", "json"]
    env = service_env(tmp_path / "client-home")
    for flag, called in (("--no-cache", 4), ("--refresh-cache", 5), (None, 5)):
        flags = [flag] if flag else []
        done = subprocess.run([*command, *flags, *inputs], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert calls(tmp_path, "numbers") == called, flag


def test_retry_requests_that_cannot_be_served_get_a_4xx(server: Server) -> None:
    failed = run(server, "svc_fail")
    path = f"/runs/{failed['id']}/retry"
    for body, expected in (
        ([1], "JSON object"),
        ({"inputs": {}}, "unknown key(s) in the retry body: inputs"),
        ({"input": [1]}, "'input' must be a JSON object"),
        ({"executor": 3}, "'executor' must be a name"),
    ):
        status, answer = server.request("POST", path, body)
        assert status == 422 and expected in answer["detail"], (body, answer)
    status, answer = server.request("POST", path, {"executor": "dsak"})
    assert status == 404 and "unknown executor 'dsak'" in answer["detail"], answer
    status, answer = server.request("POST", "/runs/0000nosuchrun/retry")
    assert status == 404 and "no run '0000nosuchrun'" in answer["detail"], answer
    sleeping = run(server, "svc_sleep", {"seconds": 30}, "?wait=false")
    wait_for(server, sleeping["uid"], ("running",))
    status, answer = server.request("POST", f"/runs/{sleeping['id']}/retry")
    assert status == 409 and "is still running" in answer["detail"], answer
    assert server.request("POST", f"/runs/{sleeping['id']}/cancel")[0] == 200
    status, answer = server.request("POST", path, {"input": {"message": "again"}})
    assert status == 200 and answer["error"].endswith("again"), answer


def test_serve_without_the_service_extra_says_what_to_install(tmp_path: Path) -> None:
    (tmp_path / "fastapi.py").write_text("raise ImportError('fastapi is not installed')\n")
    env = service_env(tmp_path / "home")
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    done = subprocess.run(
        [sys.executable, "-m", "flowstage", "serve", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'flowstage[service]'" in done.stderr and "Traceback" not in done.stderr


def too_big(server: Server) -> int:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.putrequest("POST", "/workflows/svc_echo/run")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(11 * 2**20))  # over the 10 MiB default
        connection.endheaders()
        response = connection.getresponse()
        assert "over the limit" in json.loads(response.read())["detail"]
        return response.status
    finally:
        connection.close()


def test_resources_crud_and_get_runs_sees_service_runs(server: Server) -> None:
    config = server.apply("config")
    assert config["metadata"]["uid"] and config["spec"]["data"] == {"greeting": "hello"}
    status, configs = server.request("GET", "/configs/")
    assert [c["metadata"]["name"] for c in configs] == ["svc_config"]
    trigger = server.apply("trigger")
    assert trigger["spec"]["action"]["target"] == "run_workflow"
    assert server.request("GET", f"/triggers/{trigger['metadata']['uid']}")[0] == 200
    assert server.request("DELETE", "/triggers/svc_after_echo")[0] == 200
    assert server.request("GET", "/triggers/svc_after_echo")[0] == 404
    # the store is the app directory's: the CLI sees workflows and runs
    env = service_env(server.home)
    listed = subprocess.run(
        [sys.executable, "-m", "flowstage", "get", "workflows", "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "svc_echo" in {w["name"] for w in json.loads(listed.stdout)}
    record = run(server, "svc_echo", {"value": "seen"})
    runs = subprocess.run(
        [sys.executable, "-m", "flowstage", "get", "runs", "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert record["id"] in {r["id"] for r in json.loads(runs.stdout)}
    status, deleted = server.request("DELETE", f"/workflows/run/{record['uid']}")
    assert status == 200 and server.request("GET", f"/workflows/run/{record['uid']}")[0] == 404


def test_cli_talks_to_the_service(server: Server, tmp_path: Path) -> None:
    env = service_env(tmp_path / "client-home")
    flowstage = [sys.executable, "-m", "flowstage"]
    done = subprocess.run(
        [*flowstage, "run", "--server", server.url, "svc_echo", "--value", "7"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "7"
    done = subprocess.run(
        [*flowstage, "run", "--server", server.url, "svc_fail"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "svc boom" in done.stderr
    env["FLOWSTAGE__SERVICE__URL"] = server.url  # the setting instead of --server
    done = subprocess.run(
        [*flowstage, "get", "runs", "--format", "json"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert {"svc_echo", "svc_fail"} <= {r["workflow"] for r in json.loads(done.stdout)}
    done = subprocess.run(
        [*flowstage, "apply", "-p", str(Path(__file__).parent / "service_workflows/config.yaml")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "config/svc_config" in done.stdout


def test_token_is_required_when_configured(tmp_path: Path) -> None:
    secured = Server(tmp_path / "home", api_token="s3cret")
    try:
        assert secured.request("GET", "/", token="")[0] == 401
        assert secured.request("GET", "/status", token="wrong")[0] == 401
        assert secured.request("GET", "/metrics", token="")[0] == 401
        assert secured.request("GET", "/")[0] == 200
    finally:
        assert secured.stop() == 0


def test_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flowstage", "serve", "--host", "0.0.0.0", "--port", "1"],
        env=service_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0" in done.stderr
    assert "service.api_token" in done.stderr


def test_sigterm_drains_then_cancels_running_runs(tmp_path: Path) -> None:
    draining = Server(tmp_path / "home", drain_timeout="1s")
    draining.apply("sleep")
    long = run(draining, "svc_sleep", {"seconds": 60}, "?wait=false")
    short = run(draining, "svc_sleep", {"seconds": 0.5}, "?wait=false")
    wait_for(draining, long["uid"], ("running",))
    started = time.monotonic()
    assert draining.stop(signal.SIGTERM) == 0, draining.log.read_text()
    assert time.monotonic() - started < 15
    again = Server(tmp_path / "home")
    try:
        assert again.request("GET", f"/workflows/run/{short['uid']}")[1]["state"] == "finished"
        record = again.request("GET", f"/workflows/run/{long['uid']}")[1]
        assert record["state"] == "cancelled", record
    finally:
        again.stop()


def test_kill_9_then_restart_marks_the_run_failed(tmp_path: Path) -> None:
    port = free_port()
    first = Server(tmp_path / "home", port=port)
    first.apply("sleep")
    record = run(first, "svc_sleep", {"seconds": 60}, "?wait=false")
    wait_for(first, record["uid"], ("running",))
    time.sleep(0.3)  # the recorder writes a running row after 0.1 s
    first.stop(signal.SIGKILL)
    second = Server(tmp_path / "home", port=port)
    try:
        after = second.request("GET", f"/workflows/run/{record['uid']}")[1]
        assert after["state"] == "failed", after
        assert "ended without finishing the run" in after["error"]
        assert run(second, "svc_sleep", {"seconds": 0.01})["state"] == "finished"
    finally:
        second.stop()
