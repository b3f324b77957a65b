"""The dashboard in a real browser: headless Chromium (Debian's) through Playwright, against
one real ``flowstage ui`` server (see tests/browser.py). Pages are found by the selector
contract in docs/dashboard.md. Every wait is for a state (an element's attribute, a run's
record), never a fixed sleep."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from browser import start_dashboard
from servers import Server
from teststages.ui import SCRIPT

try:
    from playwright.sync_api import Locator, Page, expect
except ImportError:  # the browser fixture skips these tests (or fails them under CI)
    pass

pytestmark = pytest.mark.timeout(120)

#: rows on one page of the runs page
RUNS_PER_PAGE = 50
RUN_URL = re.compile(r"/ui/runs/(?P<id>[0-9a-f]{12})(?:[?#].*)?$")


def start(server: Server, workflow: str, body: dict[str, Any] | None = None) -> str:
    """The id of a new run of ``workflow`` started through the API (without waiting)."""
    status, record = server.request("POST", f"/workflows/{workflow}/run?wait=false", body)
    assert status == 200, record
    return str(record["id"])


def ended(server: Server, run_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """The run's API record once it has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, record = server.request("GET", f"/workflows/run/{run_id}")
        if status == 200 and record["state"] not in ("pending", "running"):
            return dict(record)
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not end in {timeout} s")


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Whether ``check()`` turns true within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def runs_of(server: Server, workflow: str) -> list[str]:
    status, records = server.request("GET", f"/workflows/{workflow}/run")
    assert status == 200, records
    return sorted(record["id"] for record in records)


def open_run(page: Page, server: Server, run_id: str) -> Locator:
    """Open the run's page; its ``#run-state``."""
    page.goto(f"{server.url}/ui/runs/{run_id}")
    return page.locator("#run-state")


def set_field(form: Locator, name: str, value: str) -> None:
    """Fill the form field ``name``, a text input or a select."""
    field = form.locator(f'[name="{name}"]')
    if field.evaluate("element => element.tagName") == "SELECT":
        field.select_option(value)
    else:
        field.fill(value)


def test_a_run_started_from_the_form_turns_finished_live(dashboard: Server, page: Page) -> None:
    page.goto(f"{dashboard.url}/ui/workflows/ui_greet")
    for stage in ("split_name", "greet"):
        expect(page.locator(f'svg#dag g.stage[data-stage="{stage}"]')).to_have_count(1)
    form = page.locator("form#start-run")
    set_field(form, "name", "ada")
    set_field(form, "times", "3")
    set_field(form, "seconds", "1.5")
    form.locator("button[type=submit]").click()
    page.wait_for_url(RUN_URL)
    run_id = RUN_URL.search(page.url).group("id")  # type: ignore[union-attr]
    expect(page.locator("body")).to_have_attribute("data-live", "on")
    state = page.locator("#run-state")
    expect(state).to_have_attribute("data-state", re.compile("^(pending|running)$"))
    page.evaluate("window.stillTheSamePage = true")  # gone if the page reloads
    expect(state).to_have_attribute("data-state", "finished", timeout=30_000)
    assert page.evaluate("window.stillTheSamePage === true"), "the page reloaded"
    for stage in ("split_name", "greet"):
        dag_stage = page.locator(f'svg#dag g.stage[data-stage="{stage}"]')
        expect(dag_stage).to_have_attribute("data-state", "finished")
    record = ended(dashboard, run_id)
    assert record["state"] == "finished"
    assert record["result"] == ["hello ada-0", "hello ada-1", "hello ada-2"]
    page.reload()
    expect(page.locator("pre#result")).to_contain_text("hello ada-2")
    expect(page.locator("pre#input")).to_contain_text("ada")
    for stage in ("split_name", "greet"):
        expect(page.locator(f'#timeline .bar[data-stage="{stage}"]').first).to_be_visible()
        expect(page.locator(f'section.stage-detail[data-stage="{stage}"]')).to_have_count(1)


def test_the_form_checks_types_as_the_cli_does(dashboard: Server, page: Page) -> None:
    before = runs_of(dashboard, "ui_greet")
    page.goto(f"{dashboard.url}/ui/workflows/ui_greet")
    form = page.locator("form#start-run")
    set_field(form, "name", "ada")
    set_field(form, "times", "many")
    form.locator("button[type=submit]").click()
    error = page.locator(".form-error")
    expect(error.first).to_be_visible()
    expect(error.first).to_contain_text("times")
    assert not RUN_URL.search(page.url)
    assert runs_of(dashboard, "ui_greet") == before


def test_a_failed_run_shows_the_failed_map_items_traceback(dashboard: Server, page: Page) -> None:
    run_id = start(dashboard, "ui_map_fail")
    assert ended(dashboard, run_id)["state"] == "failed"
    state = open_run(page, dashboard, run_id)
    expect(state).to_have_attribute("data-state", "failed")
    expect(page.locator('svg#dag g.stage[data-stage="cities"]')).to_have_attribute(
        "data-state", "finished"
    )
    expect(page.locator('svg#dag g.stage[data-stage="visit"]')).to_have_attribute(
        "data-state", "failed"
    )
    # the run has ended: the page as served is complete, nothing is left to wait for
    assert page.locator(".failed-item").count() == 1
    traceback = page.locator('.failed-item[data-index="2"] pre.traceback')
    expect(traceback).to_contain_text("Traceback (most recent call last)")
    expect(traceback).to_contain_text("in visit")
    expect(traceback).to_contain_text("ValueError: riga is unreachable")


def test_a_partial_failure_lists_the_failed_item_on_a_finished_run(
    dashboard: Server, page: Page
) -> None:
    run_id = start(dashboard, "ui_map_partial")
    record = ended(dashboard, run_id)
    assert record["state"] == "finished" and record["result"] == ["OSLO", "LIMA", "BERGEN"]
    expect(open_run(page, dashboard, run_id)).to_have_attribute("data-state", "finished")
    failed = page.locator('section.stage-detail[data-stage="visit"] .failed-item')
    expect(failed).to_have_count(1)
    expect(failed).to_have_attribute("data-index", "2")
    traceback = failed.locator("pre.traceback")
    expect(traceback).to_contain_text("Traceback (most recent call last)")
    expect(traceback).to_contain_text("in visit")
    expect(traceback).to_contain_text("ValueError: riga is unreachable")


def test_the_cancel_button_cancels_a_running_run(
    dashboard: Server, page: Page, dialogs: list[str]
) -> None:
    run_id = start(dashboard, "ui_nap", {"seconds": 20})
    state = open_run(page, dashboard, run_id)
    expect(page.locator("body")).to_have_attribute("data-live", "on")
    expect(state).to_have_attribute("data-state", "running")
    page.locator("button#cancel-run").click()
    expect(state).to_have_attribute("data-state", "cancelled")
    assert ended(dashboard, run_id)["state"] == "cancelled"
    expect(page.locator('svg#dag g.stage[data-stage="nap"]')).to_have_attribute(
        "data-state", re.compile("^(cancelled|failed)$")
    )


def test_run_again_starts_a_run_with_the_same_input(dashboard: Server, page: Page) -> None:
    first = start(dashboard, "ui_greet", {"name": "bo", "times": 2})
    assert ended(dashboard, first)["state"] == "finished"
    open_run(page, dashboard, first)
    page.locator("button#run-again").click()
    page.wait_for_url(lambda url: bool(RUN_URL.search(url)) and first not in url)
    again = RUN_URL.search(page.url).group("id")  # type: ignore[union-attr]
    record = ended(dashboard, again)
    assert record["state"] == "finished"
    assert record["result"] == ["hello bo-0", "hello bo-1"]


def test_workflow_output_is_shown_as_text_never_run(
    dashboard: Server, page: Page, dialogs: list[str]
) -> None:
    markup = "<img src=x onerror=alert(2)>"
    run_id = start(dashboard, "ui_shout", {"note": markup})
    assert ended(dashboard, run_id)["result"] == SCRIPT
    open_run(page, dashboard, run_id)
    expect(page.locator("body")).to_have_attribute("data-live", "on")
    expect(page.locator("pre#result")).to_contain_text(SCRIPT)
    expect(page.locator("pre#input")).to_contain_text(markup)
    assert page.locator("pre#result script, pre#input img").count() == 0
    page.goto(f"{dashboard.url}/ui/runs?workflow=ui_shout")
    expect(page.locator(f'tr[data-run-id="{run_id}"]')).to_have_count(1)
    assert dialogs == []


def test_the_runs_page_updates_live_and_filters(dashboard: Server, page: Page) -> None:
    failed = start(dashboard, "ui_map_fail")
    ended(dashboard, failed)
    page.goto(f"{dashboard.url}/ui/runs")
    expect(page.locator("table#runs")).to_be_visible()
    expect(page.locator("body")).to_have_attribute("data-live", "on")
    napping = start(dashboard, "ui_nap", {"seconds": 1})
    row = page.locator(f'table#runs tr[data-run-id="{napping}"]')
    expect(row).to_have_count(1)
    expect(row).to_have_attribute("data-state", "finished", timeout=20_000)
    form = page.locator("form#run-filters")
    set_field(form, "workflow", "ui_map_fail")
    set_field(form, "state", "failed")
    form.evaluate("form => form.requestSubmit()")
    expect(row).to_have_count(0)
    rows = page.locator("table#runs tr[data-run-id]")
    expect(rows.first).to_be_visible()
    assert set(rows.evaluate_all("rows => rows.map(row => row.dataset.state)")) == {"failed"}
    page.locator(f'tr[data-run-id="{failed}"] a.run-link').click()
    page.wait_for_url(f"**/ui/runs/{failed}")
    expect(page.locator("#run-state")).to_have_attribute("data-state", "failed")


def test_the_runs_page_pages_through_runs(dashboard: Server, page: Page) -> None:
    ids = [start(dashboard, "ui_tick", {"n": n}) for n in range(RUNS_PER_PAGE + 5)]
    for run_id in ids:
        ended(dashboard, run_id)
    page.goto(f"{dashboard.url}/ui/runs?workflow=ui_tick")
    rows = page.locator("table#runs tr[data-run-id]")
    expect(rows).to_have_count(RUNS_PER_PAGE)
    first = rows.evaluate_all("rows => rows.map(row => row.dataset.runId)")
    page.locator("a#next-page").click()
    expect(rows).to_have_count(5)
    second = rows.evaluate_all("rows => rows.map(row => row.dataset.runId)")
    assert sorted(first + second) == sorted(ids)
    expect(page.locator("a#next-page")).to_have_count(0)
    page.locator("a#prev-page").click()
    expect(rows).to_have_count(RUNS_PER_PAGE)
    assert rows.evaluate_all("rows => rows.map(row => row.dataset.runId)") == first


def test_a_trigger_rule_is_toggled_from_its_page(dashboard: Server, page: Page) -> None:
    def enabled() -> bool:
        status, rule = dashboard.request("GET", "/triggers/ui_rule")
        assert status == 200, rule
        return bool(rule["spec"].get("enabled", True))

    page.goto(f"{dashboard.url}/ui/triggers")
    row = page.locator('table#triggers tr[data-rule="ui_rule"]')
    expect(row).to_have_count(1)
    assert enabled()
    row.locator("button.toggle").click()
    expect(row).to_have_attribute("data-enabled", "false")
    assert eventually(lambda: not enabled())
    row.locator("button.toggle").click()
    expect(row).to_have_attribute("data-enabled", "true")
    assert eventually(enabled)


def test_the_objects_page_lists_a_stored_artifact(dashboard: Server, page: Page) -> None:
    run_id = start(dashboard, "ui_keep", {"key": "ui_report"})
    assert ended(dashboard, run_id)["state"] == "finished"
    page.goto(f"{dashboard.url}/ui/objects")
    expect(page.locator("table#objects")).to_contain_text("ui_report")


def test_a_token_guards_the_dashboard(tmp_path: Path, page: Page) -> None:
    server = start_dashboard(tmp_path / "home", api_token="right-token")
    try:
        page.goto(f"{server.url}/ui/runs")
        login = page.locator("form#login")
        expect(login).to_be_visible()
        expect(page.locator("table#runs")).to_have_count(0)
        assert log_in(page, "wrong-token") == 401
        expect(page.locator("form#login")).to_be_visible()
        expect(page.locator("table#runs")).to_have_count(0)
        assert log_in(page, "right-token") < 400
        expect(page.locator("table#runs")).to_be_visible()
        cancel = f"{server.url}/ui/runs/000000000000/cancel"
        elsewhere = page.request.post(cancel, headers={"Origin": "http://elsewhere.example"})
        assert elsewhere.status == 403, "a logged-in browser acted for another site"
        page.context.clear_cookies()
        anonymous = page.request.post(cancel, headers={"Origin": server.url})
        assert anonymous.status == 401, "an action went through without the token"
    finally:
        assert server.stop() == 0, server.log.read_text()


def log_in(page: Page, token: str) -> int:
    """Submit ``token`` in the login form; the status of the form's answer."""
    field = page.locator("form#login input[name=token]")
    field.fill(token)
    with page.expect_response(lambda answer: answer.request.method == "POST") as answer:
        field.press("Enter")
    return answer.value.status
