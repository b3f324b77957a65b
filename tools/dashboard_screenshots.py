"""Make the screenshots of docs/dashboard.md from a real dashboard.

Starts ``flowstage ui`` on a free loopback port over a temporary app directory, applies two
examples (examples/cities, examples/parallel_branches.yaml) and three of the dashboard
tests' workflows, runs them (finished runs with parameterized stages, a failed map, runs
with input, a cancelled run), then opens the pages in headless Chromium (Debian's package,
through Playwright, as the browser tests do) and writes 1280x800 PNGs::

    python tools/dashboard_screenshots.py [--out docs/images]

Needs the ``service`` and ``test`` extras and ``apt-get install chromium``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

# the tests' server and browser helpers, found through the path above
from browser import DASHBOARD_WORKFLOWS, chromium_path, launch_chromium  # noqa: E402
from servers import Server  # noqa: E402

EXAMPLES = ROOT / "examples"


def apply_file(server: Server, path: Path) -> None:
    """Apply every document of the YAML file ``path`` through the API."""
    kinds = {"workflow": "workflows", "config": "configs", "trigger_rule": "triggers"}
    for document in yaml.safe_load_all(path.read_text()):
        status, body = server.request("POST", f"/{kinds[document['kind']]}/", document)
        if status not in (200, 201):
            raise RuntimeError(f"{path}: applying {document['metadata']['name']}: {body}")


def run(server: Server, workflow: str, body: dict[str, Any] | None = None) -> str:
    """Run ``workflow`` to its end; its run id."""
    status, record = server.request("POST", f"/workflows/{workflow}/run", body)
    if status != 200:
        raise RuntimeError(f"running {workflow}: {record}")
    return str(record["id"])


def cancelled_run(server: Server) -> None:
    """Start a run of ``ui_nap`` and cancel it once it runs."""
    status, record = server.request("POST", "/workflows/ui_nap/run?wait=false", {"seconds": 5})
    if status != 200:
        raise RuntimeError(f"running ui_nap: {record}")
    run_id = str(record["id"])
    deadline = time.monotonic() + 30
    while server.request("GET", f"/workflows/run/{run_id}")[1]["state"] != "running":
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} of ui_nap never started")
        time.sleep(0.05)
    server.request("POST", f"/runs/{run_id}/cancel")


def populate(server: Server) -> dict[str, str]:
    """Apply and run the workflows the screenshots show; the ids of the run shown finished
    and of the one shown failed."""
    apply_file(server, EXAMPLES / "cities" / "build_features.yaml")
    apply_file(server, EXAMPLES / "parallel_branches.yaml")
    for name in ("ui_greet", "ui_map_fail", "ui_nap"):
        server.apply(name, DASHBOARD_WORKFLOWS)
    run(server, "ui_greet", {"name": "oslo", "times": 4, "seconds": 0.2})
    run(server, "parallel_branches", {"n_vals": 5})
    failed = run(server, "ui_map_fail")
    cancelled_run(server)
    run(server, "ui_greet", {"name": "lima", "times": 2})
    run(server, "build_features")
    return {"failed": failed, "finished": run(server, "build_features")}


def shoot(page: Page, url: str, target: Path) -> None:
    """Open ``url``, wait for its live connection, and save the top of the page as ``target``."""
    page.goto(url)
    page.locator('body[data-live="on"]').wait_for()
    page.screenshot(path=str(target))
    print(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    executable = chromium_path()
    if executable is None:
        sys.exit("no Chromium on PATH (Debian: apt-get install chromium)")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as home:
        # the app directory is on the stages' import path: the examples' packages go there
        shutil.copytree(EXAMPLES / "cities" / "cities_plugin", Path(home) / "cities_plugin")
        shutil.copytree(EXAMPLES / "user_modules", Path(home) / "user_modules")
        server = Server(Path(home), command="ui")
        try:
            runs = populate(server)
            shots = {
                "dashboard-runs.png": "/ui/runs",
                "dashboard-run.png": f"/ui/runs/{runs['finished']}",
                "dashboard-failed-run.png": f"/ui/runs/{runs['failed']}",
                "dashboard-workflow.png": "/ui/workflows/ui_greet",
            }
            with sync_playwright() as playwright:
                chromium = launch_chromium(playwright, executable)
                page = chromium.new_page(viewport={"width": 1280, "height": 800})
                for name, path in shots.items():
                    shoot(page, server.url + path, args.out / name)
                chromium.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
