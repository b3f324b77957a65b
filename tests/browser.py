"""Browser fixtures for the dashboard tests: Debian's headless Chromium driven by Playwright
(never a browser Playwright downloads), a fresh page per test, and one real dashboard server
per session (``flowstage ui`` in a subprocess on a free loopback port, its own app directory,
the workflows of ``tests/dashboard_workflows`` applied).

Without Chromium or Playwright the browser tests skip, except under CI (``CI`` set and not
``false``/``0``), where they fail: CI installs both, so a skip there would hide a broken setup.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

from servers import Server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Dialog, Page, Playwright

HERE = Path(__file__).parent
#: the workflows the dashboard server has applied, one YAML document each
DASHBOARD_WORKFLOWS = HERE / "dashboard_workflows"
#: the launchers Debian's (and Ubuntu's) chromium package installs, in the order tried
CHROMIUM_NAMES = ("chromium", "chromium-browser")
#: how long a page action or ``expect`` waits (Playwright's 5 s default is tight on a
#: loaded two-core CI machine)
WAIT_MS = 15_000


def under_ci() -> bool:
    """True when running in CI (the ``CI`` variable most CI systems set, and ``.ci/run``)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(reason: str) -> NoReturn:
    """Skip the test for ``reason``, or fail it under CI, where the tool must be there."""
    if under_ci():
        pytest.fail(f"{reason} (CI is set, so this fails instead of skipping)", pytrace=False)
    pytest.skip(reason)


def chromium_path() -> str | None:
    """The Chromium launcher on PATH, or None."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def launch_chromium(playwright: Playwright, executable: str) -> Browser:
    """Headless ``executable`` through ``playwright``. Chromium's own sandbox refuses to
    start as root (containers, CI) and Playwright turns it off by default; said here so a
    changed default does not silently break root runs."""
    return playwright.chromium.launch(executable_path=executable, chromium_sandbox=False)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module (the browser tests live in one module, so in
    practice one per session). Not session-scoped on purpose: while Playwright's sync API
    lives it marks the main thread's event loop as running, so every later test calling
    ``asyncio.run`` would fail with "cannot be called from a running event loop"."""
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        unavailable("Playwright is not installed (pip install 'flowstage[test]')")
    expect.set_options(timeout=WAIT_MS)
    executable = chromium_path()
    if executable is None:
        unavailable("no Chromium on PATH (Debian: apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright, executable)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page in a context of its own (no cookies from other tests), 1280x800. A
    JavaScript error the page throws fails the test at teardown."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(WAIT_MS)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def dialogs(page: Page) -> list[str]:
    """Every dialog ``page`` opens (``alert``, ``confirm``...), as ``"type: message"``;
    each is accepted, so a confirmation before an action goes through."""
    seen: list[str] = []

    def accept(dialog: Dialog) -> None:
        seen.append(f"{dialog.type}: {dialog.message}")
        dialog.accept()

    page.on("dialog", accept)
    return seen


def start_dashboard(home: Path, **settings: str) -> Server:
    """A ``flowstage ui`` server over ``home`` with every workflow of
    ``tests/dashboard_workflows`` applied."""
    server = Server(home, command="ui", **settings)
    try:
        for document in sorted(DASHBOARD_WORKFLOWS.glob("*.yaml")):
            server.apply(document.stem, DASHBOARD_WORKFLOWS)
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One dashboard server for the session, with the dashboard test workflows applied."""
    pytest.importorskip("fastapi", reason="the dashboard needs the 'service' extra")
    server = start_dashboard(tmp_path_factory.mktemp("dashboard-home"))
    yield server
    assert server.stop() == 0, server.log.read_text()
