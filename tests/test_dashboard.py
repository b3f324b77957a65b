"""The web dashboard over HTTP, served by a real ``flowstage serve`` on 127.0.0.1: every
page renders, a workflow's text is escaped, the token guards pages and actions, Cancel
and Run again work, live events arrive, and nobody watching means no store polling."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the dashboard needs the 'service' extra")
pytest.importorskip("jinja2", reason="the dashboard needs the 'service' extra")
import httpx

from servers import Server

pytestmark = pytest.mark.timeout(180)

SCRIPT = "<script>alert(1)</script>"
STAGE = "<b>loud</b>"
D = "teststages.dashboard."

WORKFLOWS = [
    {
        "kind": "workflow",
        "metadata": {"name": "dash_echo"},
        "spec": {"stages": [{"name": STAGE, "target": D + "echo"}]},
    },
    {
        "kind": "workflow",
        "metadata": {"name": "dash_partial"},
        "spec": {
            "stages": [
                {"name": "numbers", "target": D + "numbers"},
                {
                    "name": "odd_fails",
                    "target": D + "odd_fails",
                    "type": "parameterized",
                    "depends_on": ["numbers"],
                    "allow_partial_failure": True,
                },
            ]
        },
    },
    {
        "kind": "workflow",
        "metadata": {"name": "dash_map_fail"},
        "spec": {
            "stages": [
                {"name": "numbers", "target": D + "numbers"},
                {
                    "name": "odd_fails",
                    "target": D + "odd_fails",
                    "type": "parameterized",
                    "depends_on": ["numbers"],
                },
            ]
        },
    },
    {
        "kind": "workflow",
        "metadata": {"name": "dash_shout"},
        "spec": {"stages": [{"name": "shout", "target": D + "shout"}]},
    },
    {
        "kind": "workflow",
        "metadata": {"name": "dash_fail"},
        "spec": {"stages": [{"name": "odd_fails", "target": D + "odd_fails"}]},
    },
    {
        "kind": "workflow",
        "metadata": {"name": "dash_nap"},
        "spec": {"stages": [{"name": "nap", "target": D + "nap"}]},
    },
    {
        "kind": "workflow",
        "metadata": {"name": "dash_typed"},
        "spec": {"stages": [{"name": "typed", "target": D + "typed"}]},
    },
    {
        "kind": "workflow",
        "metadata": {"name": "dash_cached"},
        "spec": {
            "stages": [
                {"name": "numbers", "target": D + "numbers"},
                {
                    "name": "each",
                    "target": D + "echo",
                    "type": "parameterized",
                    "depends_on": ["numbers"],
                    "cache": True,
                },
            ]
        },
    },
    {
        "kind": "trigger_rule",
        "metadata": {"name": "dash_every_hour"},
        "spec": {
            "type": "schedule",
            "rule": ["0 * * * *"],
            "catch_up": "none",
            "action": {"target": "run_workflow", "parameters": {"workflow": "dash_echo"}},
        },
    },
]
ROUTES = {"workflow": "workflows", "trigger_rule": "triggers"}


def _apply(server: Server) -> None:
    for document in WORKFLOWS:
        status, body = server.request("POST", f"/{ROUTES[document['kind']]}/", document)
        assert status in (200, 201), body


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One service (no token) for the module, with the dashboard's test workflows."""
    running = Server(tmp_path_factory.mktemp("dashboard-home"))
    _apply(running)
    yield running
    assert running.stop() == 0, running.log.read_text()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A service with an API token."""
    running = Server(tmp_path_factory.mktemp("dashboard-token"), api_token="s3cret-token")
    _apply(running)
    yield running
    assert running.stop() == 0, running.log.read_text()


def client(server: Server, **headers: str) -> httpx.Client:
    """A browser-like client: same-origin POSTs, HTML wanted."""
    base = {"Origin": server.url, "Accept": "text/html"} | headers
    return httpx.Client(base_url=server.url, headers=base, timeout=60)


def api_run(server: Server, workflow: str, body: object = None, wait: bool = True) -> dict:
    query = "" if wait else "?wait=false"
    status, record = server.request("POST", f"/workflows/{workflow}/run{query}", body)
    assert status == 200, record
    return dict(record)


def wait_state(server: Server, run_id: str, states: tuple[str, ...], timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, record = server.request("GET", f"/workflows/run/{run_id}")
        if status == 200 and record["state"] in states:
            return dict(record)
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} never reached {states}")


def page_state(html: str) -> str:
    found = re.search(r'id="run-state" class="state" data-state="([a-z]+)"', html)
    assert found, html
    return found.group(1)


# -- pages ------------------------------------------------------------------------------


def test_every_page_renders(server: Server) -> None:
    record = api_run(server, "dash_echo", {"value": 1})
    with client(server) as http:
        assert http.get("/ui").headers["location"] == "/ui/runs"
        for path in (
            "/ui/runs",
            f"/ui/runs/{record['id']}",
            "/ui/workflows",
            "/ui/workflows/dash_partial",
            "/ui/triggers",
            "/ui/objects",
            "/ui/login",
        ):
            response = http.get(path)
            assert response.status_code == 200, (path, response.text)
            assert "text/html" in response.headers["content-type"]
            assert "script-src 'self'" in response.headers["content-security-policy"]
        js = http.get("/ui/static/dashboard.js")
        assert js.status_code == 200 and "EventSource" in js.text
        assert http.get("/ui/static/nope.js").status_code == 404
        assert http.get("/ui/runs/000000000000").status_code == 404
    # the API's ping stays where flowctl looks for it
    assert server.request("GET", "/")[1]["app"] == "flowstage"


def test_runs_page_lists_filters_and_pages(server: Server) -> None:
    ids = [api_run(server, "dash_echo", {"value": i})["id"] for i in range(3)]
    failed = api_run(server, "dash_fail", {"x": 1})
    assert failed["state"] == "failed"
    with client(server) as http:
        html = http.get("/ui/runs", params={"workflow": "dash_echo"}).text
        assert 'table id="runs"' in html and 'form id="run-filters"' in html
        listed = re.findall(r'data-run-id="([0-9a-f]+)" data-state="([a-z]+)"', html)
        assert [i for i, _ in listed[:3]] == ids[::-1]  # newest first
        assert failed["id"] not in html
        assert all(state == "finished" for _, state in listed)
        finished = http.get("/ui/runs", params={"state": "finished", "source": "api"}).text
        assert failed["id"] not in finished and ids[0] in finished
        future = http.get("/ui/runs", params={"since": "2999-01-01"}).text
        assert 'data-run-id="' not in future
        wrong = http.get("/ui/runs", params={"since": "yesterday"}).text
        assert 'class="form-error"' in wrong and "is not a date or time" in wrong
    pages = _walk_pages(server, "dash_echo")
    assert pages[:3] == ids[::-1]


def _walk_pages(server: Server, workflow: str) -> list[str]:
    """Follow ``a#next-page`` links through a workflow's runs (50 a page)."""
    seen: list[str] = []
    url = f"/ui/runs?workflow={workflow}"
    with client(server) as http:
        for _ in range(10):
            html = http.get(url).text
            seen += re.findall(r'data-run-id="([0-9a-f]+)"', html)
            found = re.search(r'id="next-page" href="([^"]+)"', html)
            if not found:
                break
            url = found.group(1).replace("&amp;", "&")
            assert "before=" in url
    return seen


def test_keyset_pages_do_not_overlap(server: Server) -> None:
    for i in range(55):
        api_run(server, "dash_echo", {"value": i})
    with client(server) as http:
        first = http.get("/ui/runs", params={"workflow": "dash_echo"}).text
        one = re.findall(r'data-run-id="([0-9a-f]+)"', first)
        link = re.search(r'id="next-page" href="([^"]+)"', first)
        assert len(one) == 50 and link
        second = http.get(link.group(1).replace("&amp;", "&")).text
        two = re.findall(r'data-run-id="([0-9a-f]+)"', second)
        assert two and not set(one) & set(two)
        back = re.search(r'id="prev-page" href="([^"]+)"', second)
        assert back
        again = http.get(back.group(1).replace("&amp;", "&")).text
        assert re.findall(r'data-run-id="([0-9a-f]+)"', again) == one


def test_run_page_shows_graph_timeline_failed_items_and_result(server: Server) -> None:
    record = api_run(server, "dash_partial", {"count": 4})
    assert record["state"] == "finished"
    with client(server) as http:
        html = http.get(f"/ui/runs/{record['id']}").text
    assert page_state(html) == "finished"
    assert re.search(r'<svg id="dag"', html)
    assert 'class="stage" data-stage="numbers" data-state="finished"' in html
    assert 'class="stage" data-stage="odd_fails" data-state="finished"' in html
    assert "<path d=" in html  # the edge numbers -> odd_fails
    assert 'class="bar" data-stage="odd_fails"' in html and "4/4 items" in html
    # under the map's bar, its batches, with the items each ran in the tooltip
    batches = re.findall(
        r'<rect class="bar batch" data-stage="odd_fails"[^>]*><title>items? (\d+)(?:-(\d+))?: '
        r"[0-9.]+ ms</title>",
        html,
    )
    assert batches
    covered = [i for a, b in batches for i in range(int(a), int(b or a) + 1)]
    assert sorted(covered) == [0, 1, 2, 3]
    assert "each batch of items" in html
    for index in (1, 3):
        block = html.split(f'class="failed-item" data-index="{index}"')[1].split("</div>")[0]
        assert 'pre class="traceback"' in block and "Traceback (most recent call last)" in block
        assert "&lt;b&gt;item" in block and "<b>item" not in block
    result = html.split('<pre id="result">')[1].split("</pre>")[0]
    assert json.loads(result) == [0, 2]
    given = html.split('<pre id="input">')[1].split("</pre>")[0]
    assert json.loads(given.replace("&#34;", '"')) == {"count": 4}


def test_a_map_that_failed_shows_its_failed_item_with_the_traceback(server: Server) -> None:
    record = api_run(server, "dash_map_fail", {"count": 4})
    assert record["state"] == "failed"
    with client(server) as http:
        html = http.get(f"/ui/runs/{record['id']}").text
    assert page_state(html) == "failed"
    assert 'class="stage" data-stage="odd_fails" data-state="failed"' in html
    detail = html.split('class="stage-detail" data-stage="odd_fails"')[1].split("</section>")[0]
    assert detail.count('class="failed-item"') == 1
    # items 1 and 3 both fail; batches run in parallel, so either may stop the map first
    index = re.findall(r'class="failed-item" data-index="([0-9]+)"', detail)[0]
    assert index in ("1", "3")
    item = detail.split(f'class="failed-item" data-index="{index}"')[1].split("</div>")[0]
    assert "Traceback (most recent call last)" in item and "in odd_fails" in item
    assert f"ValueError: &lt;b&gt;item {index} is odd&lt;/b&gt;" in item


def _stage_states(html: str, stage: str) -> set[str]:
    """The states a run page shows for ``stage``: its box, its bar, its section."""
    return set(re.findall(rf'data-stage="{stage}" data-state="([a-z]+)"', html))


def test_a_map_that_took_some_items_from_the_cache_is_not_shown_cached(server: Server) -> None:
    api_run(server, "dash_cached", {"count": 2})
    some = api_run(server, "dash_cached", {"count": 4})
    every = api_run(server, "dash_cached", {"count": 4})
    with client(server) as http:
        partly = http.get(f"/ui/runs/{some['id']}").text
        whole = http.get(f"/ui/runs/{every['id']}").text
    assert _stage_states(partly, "each") == {"finished"}
    assert "2 of 4 item(s) taken from the cache" in partly
    assert _stage_states(whole, "each") == {"cached"}
    assert _stage_states(whole, "numbers") == {"finished"}  # no cache: it ran


def test_workflow_and_stage_text_is_escaped(server: Server) -> None:
    record = api_run(server, "dash_echo", {"value": SCRIPT})
    assert record["result"] == SCRIPT
    with client(server) as http:
        pages = [
            http.get(f"/ui/runs/{record['id']}").text,
            http.get("/ui/runs").text,
            http.get("/ui/workflows/dash_echo").text,
        ]
    run_page = pages[0]
    for html in pages:
        assert SCRIPT not in html and "<b>loud" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in run_page
    assert 'data-stage="&lt;b&gt;loud&lt;/b&gt;"' in run_page
    assert "&lt;b&gt;loud&lt;/b&gt;" in pages[2]  # the definition and the graph


def test_a_background_run_of_the_cli_shows_its_log_escaped(server: Server) -> None:
    import subprocess
    import sys

    from servers import service_env

    started = subprocess.run(
        [sys.executable, "-m", "flowstage", "run", "dash_shout", "--no-wait"],
        env=service_env(server.home),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    run_id = started.stdout.strip().splitlines()[-1]
    with client(server) as http:
        _until(lambda: page_state(http.get(f"/ui/runs/{run_id}").text) == "finished", 60)
        html = http.get(f"/ui/runs/{run_id}").text
        listed = http.get("/ui/runs", params={"source": "background"}).text
    log = html.split('<pre id="log">')[1].split("</pre>")[0]
    assert "log line: &lt;b&gt;bold&lt;/b&gt;" in log
    assert "<b>bold" not in html
    assert f'data-run-id="{run_id}" data-state="finished"' in listed


def test_a_run_page_reads_no_log_outside_the_logs_directory(server: Server, tmp_path: Path) -> None:
    """A row's ``log_path`` names a file elsewhere, or the run's log is a symlink out:
    the page shows no log; the run's own log file is shown whatever the row says."""
    from flowstage.core.runs import Run, new_run_id, now
    from flowstage.core.settings import StoreSettings
    from flowstage.state.store import Store

    secret = tmp_path / "secret.txt"
    secret.write_text("not for the dashboard\n")
    logs = server.home / "logs"
    logs.mkdir(exist_ok=True)
    store = Store(server.home / "flowstage.db", StoreSettings())
    ids = {}
    for case in ("elsewhere", "symlink", "own"):
        run = Run(id=new_run_id(), workflow="dash_logs", source="background", state="finished")
        run.started_at = run.finished_at = now()
        store.finish_run(run)
        own = logs / f"{run.id}.log"
        if case == "symlink":
            own.symlink_to(secret)
        elif case == "own":
            own.write_text("the run's own line\n")
        recorded = secret if case == "elsewhere" else own
        with sqlite3.connect(server.home / "flowstage.db") as conn:
            conn.execute("UPDATE runs SET log_path = ? WHERE id = ?", (str(recorded), run.id))
        ids[case] = run.id
    with client(server) as http:
        pages = {case: http.get(f"/ui/runs/{run_id}").text for case, run_id in ids.items()}
    for case in ("elsewhere", "symlink"):
        assert "not for the dashboard" not in pages[case]
        assert '<pre id="log">' not in pages[case]
    assert "the run&#39;s own line" in pages["own"]


def test_cancel_and_run_again(server: Server) -> None:
    record = api_run(server, "dash_nap", {"seconds": 30}, wait=False)
    wait_state(server, record["id"], ("running",))
    with client(server) as http:
        html = http.get(f"/ui/runs/{record['id']}").text
        assert 'id="cancel-run"' in html and page_state(html) == "running"
        done = http.post(f"/ui/runs/{record['id']}/cancel")
        assert done.status_code == 303 and done.headers["location"] == f"/ui/runs/{record['id']}"
        assert page_state(http.get(done.headers["location"]).text) == "cancelled"
        ended = http.get(f"/ui/runs/{record['id']}").text
        assert 'id="cancel-run"' not in ended and 'id="run-again"' in ended
        # a cancel of a run that ended is refused, and says why
        again = http.post(f"/ui/runs/{record['id']}/cancel")
        assert again.status_code == 409 and "already ended" in again.text

        echo = api_run(server, "dash_echo", {"value": "same input"})
        moved = http.post(f"/ui/runs/{echo['id']}/again")
        assert moved.status_code == 303
        new_id = moved.headers["location"].rsplit("/", 1)[1]
        assert new_id != echo["id"]
    rerun = wait_state(server, new_id, ("finished",))
    assert rerun["result"] == "same input" and rerun["workflow"] == "dash_echo"


def test_cancel_sends_back_to_the_run_page_with_its_id_quoted(server: Server) -> None:
    """A run of another process whose id needs quoting (ids are only checked where they
    are made): the redirect after Cancel stays one path segment on the dashboard."""
    import subprocess

    from flowstage.core.runs import Run, now
    from flowstage.core.settings import StoreSettings
    from flowstage.state.liveness import process_start, this_host
    from flowstage.state.store import Store

    odd = "odd id?next=evil.example#x"  # (a "/" would not reach the route at all)
    store = Store(server.home / "flowstage.db", StoreSettings())
    run = Run(id=odd, workflow="elsewhere", source="cli", state="finished")
    run.started_at = run.finished_at = now()
    store.finish_run(run)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        with sqlite3.connect(server.home / "flowstage.db") as conn:
            conn.execute(
                "UPDATE runs SET state = 'running', finished_at = NULL, host = ?, pid = ?, "
                "pid_start = ? WHERE id = ?",
                (this_host(), sleeper.pid, process_start(sleeper.pid), odd),
            )
        quoted = "odd%20id%3Fnext%3Devil.example%23x"
        with client(server) as http:
            done = http.post(f"/ui/runs/{quoted}/cancel")
        assert done.status_code == 303, done.text
        assert done.headers["location"] == f"/ui/runs/{quoted}"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_paging_takes_only_a_seq(server: Server) -> None:
    with client(server) as http:
        for given in ("²", "1e3", "-1", "99999999999999999999", "9" * 19):
            answer = http.get("/ui/runs", params={"before": given})
            assert answer.status_code == 400, (given, answer.text)
            assert "must be a run's seq" in answer.text
        assert http.get("/ui/runs", params={"after": "9" * 18}).status_code == 200


def test_retry_button_reuses_what_finished(server: Server) -> None:
    failed = api_run(server, "dash_map_fail", {"count": 4})
    assert failed["state"] == "failed"
    with client(server) as http:
        assert 'id="retry-run"' in http.get(f"/ui/runs/{failed['id']}").text
        moved = http.post(f"/ui/runs/{failed['id']}/retry")
        assert moved.status_code == 303
        retry_id = moved.headers["location"].rsplit("/", 1)[1]
        assert retry_id != failed["id"]
        retried = wait_state(server, retry_id, ("failed",))
        page = http.get(f"/ui/runs/{retry_id}").text
        # a run that finished has nothing to retry: no button
        echo = api_run(server, "dash_echo", {"value": 1})
        assert 'id="retry-run"' not in http.get(f"/ui/runs/{echo['id']}").text
    assert retried["retry_of"] == failed["id"]
    assert f'href="/ui/runs/{failed["id"]}"' in page
    detail = page.split('<section class="stage-detail" data-stage="numbers"')[1]
    assert "reused from run" in detail.split("</section>")[0]
    # reused whole: cached; the map that ran its failed items again: not cached
    assert _stage_states(page, "numbers") == {"cached"}
    assert _stage_states(page, "odd_fails") == {"failed"}


def test_start_form_checks_values_as_the_cli_does(server: Server) -> None:
    with client(server) as http:
        page = http.get("/ui/workflows/dash_typed").text
        assert 'form id="start-run"' in page
        assert 'name="count"' in page and 'name="label"' in page
        bad = http.post("/ui/workflows/dash_typed/run", data={"count": "<i>many</i>"})
        assert bad.status_code == 422
        assert 'class="form-error"' in bad.text and "count" in bad.text
        assert "<i>many</i>" not in bad.text and "&lt;i&gt;many&lt;/i&gt;" in bad.text
        good = http.post("/ui/workflows/dash_typed/run", data={"count": "3", "label": "007"})
        assert good.status_code == 303
        run_id = good.headers["location"].rsplit("/", 1)[1]
    # "007" stays text for ``label: str`` (as `flowstage run --label 007` keeps it)
    assert wait_state(server, run_id, ("finished",))["result"] == "007007007"


def test_workflow_page_shows_configs_triggers_and_recent_runs(server: Server) -> None:
    config = {
        "kind": "config",
        "metadata": {"name": "dash_config"},
        "spec": {"selector": {"type": "name", "value": "dash_echo"}, "data": {"region": "<eu>"}},
    }
    assert server.request("POST", "/configs/", config)[0] == 201
    api_run(server, "dash_echo", {"value": 1})
    with client(server) as http:
        html = http.get("/ui/workflows/dash_echo").text
    assert "dash_config" in html and "&#34;&lt;eu&gt;&#34;" in html
    assert "dash_every_hour" in html
    assert 'id="sparkline"' in html and "<polyline points=" in html
    assert 'svg id="dag"' in html


def test_trigger_toggle(server: Server) -> None:
    with client(server) as http:
        html = http.get("/ui/triggers").text
        assert (
            'tr id="rule-dash_every_hour" data-rule="dash_every_hour" data-enabled="true"' in html
        )
        moved = http.post("/ui/triggers/dash_every_hour/toggle")
        assert moved.status_code == 303
        html = http.get("/ui/triggers").text
        assert 'data-rule="dash_every_hour" data-enabled="false"' in html
        status, rule = server.request("GET", "/triggers/dash_every_hour")
        assert status == 200 and rule["spec"]["enabled"] is False
        assert http.post("/ui/triggers/dash_every_hour/toggle").status_code == 303
        assert server.request("GET", "/triggers/dash_every_hour")[1]["spec"]["enabled"] is True


def test_objects_page_lists_artifacts(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    from flowstage.storage.artifacts import new_artifact

    monkeypatch.setenv("FLOWSTAGE_HOME", str(server.home))  # the service's own store
    artifact = new_artifact("dash_model", namespace="dash")
    artifact.write("weights.bin", b"12345")
    artifact.set_meta("owner", "<team>")
    with client(server) as http:
        html = http.get("/ui/objects").text
    assert 'table id="objects"' in html
    assert 'data-namespace="dash" data-name="dash_model"' in html
    assert "&lt;team&gt;" in html and "<team>" not in html


# -- token ------------------------------------------------------------------------------


def test_token_guards_pages_and_actions(guarded: Server) -> None:
    record = api_run(guarded, "dash_echo", {"value": 1})
    with client(guarded) as http:
        page = http.get("/ui/runs")
        assert page.status_code == 303
        assert page.headers["location"].startswith("/ui/login?next=")
        assert http.get("/ui/events", headers={"Accept": "text/event-stream"}).status_code == 401
        assert http.get("/ui/runs", headers={"Accept": "*/*"}).status_code == 401
        login = http.get("/ui/login")
        assert login.status_code == 200 and 'form id="login"' in login.text
        # an action without the token is refused before it runs
        refused = http.post(f"/ui/runs/{record['id']}/again")
        assert refused.status_code == 401
        wrong = http.post("/ui/login", data={"token": "guess", "next": "/ui/runs"})
        assert wrong.status_code == 401 and "wrong token" in wrong.text
        assert "flowstage_session" not in wrong.headers.get("set-cookie", "")
        good = http.post("/ui/login", data={"token": "s3cret-token", "next": "/ui/runs"})
        assert good.status_code == 303 and good.headers["location"] == "/ui/runs"
        cookie = good.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert "s3cret-token" not in cookie
        assert http.get("/ui/runs").status_code == 200
        # the cookie is for the pages only: the API still wants the Bearer header
        assert http.get("/workflows/").status_code == 401
        # a POST from another site is refused even with the cookie
        forged = http.post(
            f"/ui/runs/{record['id']}/again", headers={"Origin": "http://evil.example"}
        )
        assert forged.status_code == 403
        unmarked = http.post(f"/ui/runs/{record['id']}/again", headers={"Origin": ""})
        assert unmarked.status_code == 403
        assert http.post(f"/ui/runs/{record['id']}/again").status_code == 303
    # the Bearer header opens the pages too (no login needed)
    bearer = {"Authorization": "Bearer s3cret-token"}
    with client(guarded, **bearer) as http:
        assert http.get("/ui/runs").status_code == 200
    with client(guarded, Authorization="Bearer wrong") as http:
        assert http.get("/ui/runs", headers={"Accept": "*/*"}).status_code == 401


def _log_in(server: Server, http: httpx.Client, token: str) -> httpx.Response:
    return http.post("/ui/login", data={"token": token, "next": "/ui/runs"})


def test_each_login_is_its_own_session_and_log_out_ends_it(guarded: Server) -> None:
    with client(guarded) as http, client(guarded) as other:
        first = _log_in(guarded, http, "s3cret-token")
        assert "max-age=43200" in first.headers["set-cookie"].lower()  # 12 h, the default
        _log_in(guarded, other, "s3cret-token")
        mine, theirs = http.cookies["flowstage_session"], other.cookies["flowstage_session"]
        assert mine != theirs
        page = http.get("/ui/runs")
        assert page.status_code == 200 and 'form id="logout"' in page.text
        out = http.post("/ui/logout")
        assert out.status_code == 303 and out.headers["location"] == "/ui/login"
        assert "flowstage_session" not in http.cookies
        # the cookie is void on the server, not only gone from this browser
        http.cookies.set("flowstage_session", mine, path="/ui")
        assert http.get("/ui/runs", headers={"Accept": "*/*"}).status_code == 401
        assert other.get("/ui/runs").status_code == 200
        forged = f"{int(time.time())}.{'0' * 16}.{'0' * 64}"
        other.cookies.set("flowstage_session", forged, path="/ui")
        assert other.get("/ui/runs", headers={"Accept": "*/*"}).status_code == 401
    # without a token there is nothing to log out of
    with client(guarded, Authorization="Bearer s3cret-token") as http:
        assert 'form id="logout"' in http.get("/ui/runs").text


def test_a_session_expires_and_wrong_tokens_are_throttled(tmp_path: Path) -> None:
    guarded = Server(tmp_path / "home", api_token="right-token", session_max_age="1s")
    try:
        with client(guarded) as http:
            assert (
                "max-age=1;" in _log_in(guarded, http, "right-token").headers["set-cookie"].lower()
            )
            assert http.get("/ui/runs").status_code == 200
            # expiry is checked by the service: a browser that keeps the cookie is let in no
            # more
            kept = http.cookies["flowstage_session"]
            _until(lambda: http.get("/ui/runs", headers={"Accept": "*/*"}).status_code == 401, 10)
            http.cookies.set("flowstage_session", kept, path="/ui")
            assert http.get("/ui/runs").status_code == 303
            for _ in range(5):
                assert _log_in(guarded, http, "guess").status_code == 401
            # the sixth try within the minute waits, right token or not
            refused = _log_in(guarded, http, "right-token")
            assert refused.status_code == 429 and "too many wrong tokens" in refused.text
            assert 1 <= int(refused.headers["retry-after"]) <= 60
            assert "flowstage_session=" not in refused.headers.get("set-cookie", "")
        # the Bearer header is not throttled (the API answers 401 to a wrong one)
        with client(guarded, Authorization="Bearer right-token") as http:
            assert http.get("/ui/runs").status_code == 200
    finally:
        assert guarded.stop() == 0, guarded.log.read_text()


def test_login_never_redirects_off_the_dashboard(guarded: Server) -> None:
    with client(guarded) as http:
        for target in ("https://evil.example/", "//evil.example/ui", "/workflows/"):
            moved = http.post("/ui/login", data={"token": "s3cret-token", "next": target})
            assert moved.headers["location"] == "/ui/runs"


def test_cross_origin_posts_are_refused_without_a_token(server: Server) -> None:
    record = api_run(server, "dash_echo", {"value": 1})
    with client(server, Origin="http://evil.example") as http:
        assert http.post(f"/ui/runs/{record['id']}/again").status_code == 403
        assert http.post("/ui/triggers/dash_every_hour/toggle").status_code == 403


# -- live updates -----------------------------------------------------------------------


def _status(server: Server) -> dict:
    status, body = server.request("GET", "/status")
    assert status == 200
    return dict(body["dashboard"])


def _events(server: Server, found: list[dict], stop: threading.Event) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        with http.stream("GET", "/ui/events") as stream:
            for line in stream.iter_lines():
                if line.startswith("event: hello"):
                    found.append({"hello": True})
                elif line.startswith("data: ") and line != "data: {}":
                    found.append(json.loads(line[6:]))
                if stop.is_set():
                    return


def _until(condition, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition never met")


def test_sse_announces_a_run_that_finishes(server: Server) -> None:
    found: list[dict] = []
    stop = threading.Event()
    reader = threading.Thread(target=_events, args=(server, found, stop), daemon=True)
    reader.start()
    _until(lambda: {"hello": True} in found)
    record = api_run(server, "dash_echo", {"value": "live"})
    _until(
        lambda: any(e.get("run") == record["id"] and e.get("state") == "finished" for e in found)
    )
    assert any(e.get("why") == "stage" and e.get("run") == record["id"] for e in found)
    stop.set()
    api_run(server, "dash_echo", {"value": "wake the reader"})
    reader.join(10)


def test_the_store_is_polled_only_while_a_page_listens(server: Server) -> None:
    _until(lambda: _status(server)["clients"] == 0)
    _until(lambda: not _status(server)["watching"])
    before = _status(server)["store_polls"]
    time.sleep(2.5)  # longer than the watcher's interval
    assert _status(server)["store_polls"] == before
    found: list[dict] = []
    stop = threading.Event()
    reader = threading.Thread(target=_events, args=(server, found, stop), daemon=True)
    reader.start()
    _until(lambda: _status(server)["clients"] == 1)
    _until(lambda: _status(server)["store_polls"] > before + 1)
    stop.set()
    api_run(server, "dash_echo", {"value": "wake the reader"})
    reader.join(10)
    _until(lambda: _status(server)["clients"] == 0)
    _until(lambda: not _status(server)["watching"])
    after = _status(server)["store_polls"]
    time.sleep(2.5)
    assert _status(server)["store_polls"] == after


def test_a_run_of_another_process_is_picked_up(server: Server) -> None:
    """A run written to the store by someone else (here: directly) reaches the page."""
    from flowstage.core.runs import Run, new_run_id, now
    from flowstage.core.settings import StoreSettings
    from flowstage.state.store import Store

    found: list[dict] = []
    stop = threading.Event()
    reader = threading.Thread(target=_events, args=(server, found, stop), daemon=True)
    reader.start()
    _until(lambda: {"hello": True} in found)
    time.sleep(2.5)  # the watcher's first look is its baseline
    store = Store(server.home / "flowstage.db", StoreSettings())
    run = Run(id=new_run_id(), workflow="elsewhere", source="cli", state="finished")
    run.started_at = run.finished_at = now()
    store.finish_run(run)
    _until(lambda: any(e.get("why") == "store" for e in found))
    stop.set()
    api_run(server, "dash_echo", {"value": "wake the reader"})
    reader.join(10)
    with client(server) as http:
        html = http.get("/ui/runs", params={"source": "cli"}).text
    assert f'data-run-id="{run.id}" data-state="finished"' in html


def test_a_heartbeat_alone_does_not_make_pages_refetch(server: Server) -> None:
    """A running run of another process: its heartbeat is no change; its progress is."""
    import subprocess

    from flowstage.core.runs import Run, new_run_id, now
    from flowstage.core.settings import StoreSettings
    from flowstage.state.liveness import process_start, this_host
    from flowstage.state.store import Store

    store = Store(server.home / "flowstage.db", StoreSettings())
    run = Run(id=new_run_id(), workflow="elsewhere", source="cli", state="finished")
    run.started_at = run.finished_at = now()
    store.finish_run(run)
    db = server.home / "flowstage.db"

    def update(sql: str, *params: object) -> None:
        with sqlite3.connect(db) as conn:
            conn.execute(sql, (*params, run.id))

    sleeper = subprocess.Popen(["sleep", "120"])  # the "process" running it: alive
    found: list[dict] = []
    stop = threading.Event()
    reader = threading.Thread(target=_events, args=(server, found, stop), daemon=True)
    try:
        update(
            "UPDATE runs SET state = 'running', finished_at = NULL, host = ?, pid = ?, "
            "pid_start = ?, heartbeat_at = ? WHERE id = ?",
            this_host(),
            sleeper.pid,
            process_start(sleeper.pid),
            time.time(),
        )
        reader.start()
        _until(lambda: {"hello": True} in found)
        start = _status(server)["store_polls"]
        _until(lambda: _status(server)["store_polls"] >= start + 2)  # the watcher's baseline
        found.clear()
        for _ in range(2):
            polls = _status(server)["store_polls"]
            update("UPDATE runs SET heartbeat_at = ? WHERE id = ?", time.time())
            _until(lambda polls=polls: _status(server)["store_polls"] >= polls + 2)
        assert not [e for e in found if e.get("why") == "store"], found
        update("UPDATE runs SET stages = ? WHERE id = ?", '{"s": {"state": "running"}}')
        _until(lambda: any(run.id in e.get("runs", ()) for e in found))
    finally:
        stop.set()
        sleeper.kill()
        sleeper.wait()
        api_run(server, "dash_echo", {"value": "wake the reader"})
        reader.join(10)


def test_the_apps_shutdown_closes_the_live_hub() -> None:
    """The lifespan's end cancels the store watcher and leaves the bus and the hooks."""
    import asyncio

    from flowstage.core.settings import ServiceSettings
    from flowstage.service import Service
    from flowstage.service.api import create_app

    async def serve_and_stop() -> None:
        service = Service(ServiceSettings(), executor={"name": "local", "max_workers": 1})
        app = create_app(service)
        hub = app.state.live
        relays = [
            p for _, p in service.plugins.pm.list_name_plugin() if type(p).__name__ == "_StageRelay"
        ]
        assert len(relays) == 1
        stream = hub.stream()
        async with app.router.lifespan_context(app):
            assert (await anext(stream)).startswith("retry:")
            assert hub.stats()["watching"] and hub.clients == 1
        assert not hub.stats()["watching"]
        assert not service.plugins.pm.is_registered(relays[0])
        await stream.aclose()

    asyncio.run(serve_and_stop())


# -- the store --------------------------------------------------------------------------


def test_a_version_3_store_gains_the_indexes(tmp_path: Path) -> None:
    from flowstage.core.settings import StoreSettings
    from flowstage.state.database import MIGRATIONS, SCHEMA_VERSION
    from flowstage.state.store import Store

    path = tmp_path / "flowstage.db"
    conn = sqlite3.connect(path)
    for step in MIGRATIONS[:3]:
        for statement in step:
            conn.execute(statement)
    conn.execute(
        "INSERT INTO runs (id, workflow, state, source, created_at) "
        "VALUES ('abcdefabcdef', 'old', 'finished', 'cli', '2026-01-01T00:00:00+00:00')"
    )
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()
    store = Store(path, StoreSettings())
    rows, total = store.list_runs()
    assert total == 1 and rows[0]["id"] == "abcdefabcdef"
    names = {r[0] for r in store.query("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"runs_by_state", "runs_by_source", "runs_by_created"} <= names
    assert store.query("PRAGMA user_version")[0][0] == SCHEMA_VERSION == 4
    plan = store.query(
        "EXPLAIN QUERY PLAN SELECT seq FROM runs WHERE state = ? ORDER BY seq DESC LIMIT 51",
        ("failed",),
    )
    assert "runs_by_state" in " ".join(str(r) for r in plan)


# -- flowstage ui -----------------------------------------------------------------------


def test_flowstage_ui_serves_the_store_without_triggers(tmp_path: Path) -> None:
    import subprocess
    import sys

    from servers import free_port, service_env

    home = tmp_path / "ui-home"
    home.mkdir()
    port = free_port()
    log = (home / "ui.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "flowstage", "ui", "--port", str(port)],
        env=service_env(home),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, headers={"Origin": url}, timeout=30) as http:
            _until(lambda: _answers(http))
            for document in (WORKFLOWS[0], WORKFLOWS[-1]):
                posted = http.post(f"/{ROUTES[document['kind']]}/", json=document)
                assert posted.status_code in (200, 201), posted.text
            triggers = http.get("/ui/triggers").text
            assert "fires no triggers" in triggers
            started = http.post("/ui/workflows/dash_echo/run", data={"value": "from ui"})
            assert started.status_code == 303
            run_id = started.headers["location"].rsplit("/", 1)[1]
            _until(lambda: 'data-state="finished"' in http.get(f"/ui/runs/{run_id}").text)
    finally:
        process.terminate()
        assert process.wait(60) == 0, (home / "ui.log").read_text()
        log.close()


def _answers(http: httpx.Client) -> bool:
    try:
        return http.get("/").status_code == 200
    except httpx.TransportError:
        return False


def test_layout_puts_each_stage_after_its_longest_path() -> None:
    from flowstage.service.dashboard.layout import BOX_HEIGHT, BOX_WIDTH, layers, layout

    graph = {"a": [], "b": ["a"], "c": ["a", "b"], "d": [], "e": ["c", "missing"]}
    assert layers(graph) == {"a": 0, "b": 1, "c": 2, "d": 0, "e": 3}
    drawn = layout(graph, {"c": "failed"})
    boxes = {n.name: n for n in drawn.nodes}
    assert boxes["c"].state == "failed" and boxes["a"].state == "pending"
    assert boxes["a"].x < boxes["b"].x < boxes["c"].x < boxes["e"].x
    assert boxes["a"].y < boxes["d"].y  # same column, the workflow's order
    # each arrow from the right middle of its dependency's box to the left middle of its user's
    ends = {(p[0], p[-1]) for p in (re.findall(r"\d+,\d+", e.path) for e in drawn.edges)}
    right = {n: f"{b.x + BOX_WIDTH},{b.y + BOX_HEIGHT // 2}" for n, b in boxes.items()}
    left = {n: f"{b.x},{b.y + BOX_HEIGHT // 2}" for n, b in boxes.items()}
    pairs = (("a", "b"), ("a", "c"), ("b", "c"), ("c", "e"))
    assert ends == {(right[d], left[u]) for d, u in pairs} and len(drawn.edges) == 4
    chain = {f"s{i}": [f"s{i - 1}"] if i else [] for i in range(1000)}
    assert layers(chain)["s999"] == 999


def test_timeline_packs_batches_under_their_stage_and_reads_old_rows() -> None:
    from datetime import datetime, timezone

    from flowstage.service.dashboard.timeline import BATCH_ROWS, timeline

    start = "2026-01-01T00:00:00+00:00"
    stages = {
        "old": {
            "state": "finished",
            "started_at": start,
            "finished_at": "2026-01-01T00:00:01+00:00",
        },
        "m": {
            "state": "finished",
            "started_at": "2026-01-01T00:00:01+00:00",
            "finished_at": "2026-01-01T00:00:03+00:00",
            "items_total": 30,
            "items_done": 30,
            # two workers side by side, then one batch after both
            "batches": [[0.0, 1.0, 0, 10], [0.0, 1.0, 10, 10], [1.0, 1.0, 20, 10]],
            "batches_left_out": 7,
        },
    }
    drawn = timeline(stages, now=datetime(2026, 1, 1, tzinfo=timezone.utc))
    old, mapped = drawn.bars
    assert old.stage == "old" and old.batches == [] and old.batch_rows == 0  # a row of before
    assert mapped.batch_rows == 2 and mapped.batches_left_out == 7
    assert [(b.row, b.first, b.last) for b in mapped.batches] == [
        (0, 0, 9),
        (1, 10, 19),
        (0, 20, 29),
    ]
    first, _, last = mapped.batches
    assert first.left == pytest.approx(100 / 3) and first.width == pytest.approx(100 / 3)
    assert last.left + last.width == pytest.approx(100)
    crowd = {"m": {**stages["m"], "batches": [[0.0, 1.0, i, 1] for i in range(20)]}}
    assert timeline(crowd).bars[0].batch_rows == BATCH_ROWS
