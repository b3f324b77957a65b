"""How fast the dashboard answers over a big store (issue 18).

Fills a fresh store with ``--runs`` runs (default 100,000) through the store's own API
(``Store.finish_run``, as every recorded run is written), plus one run of a
``--stages``-stage workflow (default 1,000, a random graph of up to three edges a
stage), then starts ``flowstage ui`` on it and times, over real HTTP on 127.0.0.1:

- the runs page, unfiltered and with each filter, and an older page (``before=``);
- the run page of the big run (graph, timeline and every stage's details);
- the API's ping, as the baseline of what any answer costs here.

Targets: the runs page under 300 ms, the big run page under 2 s (median of ``--repeat``).

    python benchmarks/bench_dashboard.py [--runs 100000] [--stages 1000] [--repeat 7]
        [--check]
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

from flowstage.core.runs import Run, StageRecord
from flowstage.core.settings import StoreSettings
from flowstage.state.store import Store

RUNS_TARGET_MS = 300.0
RUN_TARGET_MS = 2000.0
WORKFLOWS = [f"workflow_{i}" for i in range(20)]
STATES = ["finished"] * 8 + ["failed", "cancelled"]
SOURCES = ["cli", "api", "trigger", "background"]


def fill(store: Store, count: int) -> None:
    """``count`` ended runs over the last 30 days, one write each."""
    rng = random.Random(18)
    start = datetime.now(timezone.utc) - timedelta(days=30)
    step = timedelta(days=30) / max(count, 1)
    for i in range(count):
        begun = start + step * i
        run = Run(
            id=f"{i:012x}",
            workflow=rng.choice(WORKFLOWS),
            source=rng.choice(SOURCES),
            state=rng.choice(STATES),  # type: ignore[arg-type]
            input={"i": i},
            started_at=begun,
            finished_at=begun + timedelta(seconds=rng.random() * 60),
            stages={"only": StageRecord("only", state="finished", attempts=1)},
        )
        if run.state == "finished":
            run.result = i
        else:
            run.error = "stage 'only' failed: ValueError: no"
        store.finish_run(run)


def big_run(store: Store, stages: int) -> str:
    """One finished run of a ``stages``-stage graph; its id."""
    rng = random.Random(1000)
    begun = datetime.now(timezone.utc) - timedelta(minutes=5)
    records = {}
    for i in range(stages):
        earlier = [f"stage_{j}" for j in range(max(0, i - 30), i)]
        deps = rng.sample(earlier, min(len(earlier), rng.randint(0, 3)))
        start = begun + timedelta(seconds=i * 0.2)
        records[f"stage_{i}"] = StageRecord(
            f"stage_{i}",
            state="finished",
            attempts=1,
            started_at=start,
            finished_at=start + timedelta(seconds=rng.random()),
            depends_on=deps,
        )
    run = Run(
        id="b1b1b1b1b1b1",
        workflow="big",
        source="cli",
        state="finished",
        started_at=begun,
        finished_at=begun + timedelta(seconds=stages * 0.2 + 1),
        stages=records,
        result="ok",
    )
    store.finish_run(run)
    return run.id


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> float:
    """Milliseconds to fetch ``url`` in full."""
    began = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        response.read()
        assert response.status == 200, response.status
    return (time.perf_counter() - began) * 1000


def median_ms(url: str, repeat: int) -> float:
    get(url)  # warm: the first answer pays for imports and template compiling
    return statistics.median(get(url) for _ in range(repeat))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--stages", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    store = Store(home / "flowstage.db", StoreSettings())
    began = time.perf_counter()
    fill(store, args.runs)
    run_id = big_run(store, args.stages)
    print(f"filled {args.runs} runs in {time.perf_counter() - began:.1f} s ({home})")

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWSTAGE__")}
    env["FLOWSTAGE_HOME"] = str(home)
    server = subprocess.Popen(
        [sys.executable, "-m", "flowstage", "ui", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    print(f"store: {home}; delete it when done")
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                get(base + "/")
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("flowstage ui did not start") from None
                time.sleep(0.1)

        def ago(days: int) -> str:
            return (datetime.now(timezone.utc) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M")

        since = ago(3)
        cases = {
            "ping (baseline)": "/",
            "runs page": "/ui/runs",
            "runs ?workflow=": "/ui/runs?workflow=workflow_7",
            "runs ?state=failed": "/ui/runs?state=failed",
            "runs ?source=trigger": "/ui/runs?source=trigger",
            "runs ?since=3 days": f"/ui/runs?since={since}",
            "runs ?since&until 10 days": f"/ui/runs?since={ago(20)}&until={ago(10)}",
            "runs ?until=before any run": "/ui/runs?until=2000-01-01",
            "runs ?state&source&workflow": (
                "/ui/runs?state=cancelled&source=api&workflow=workflow_3"
            ),
            "runs older page": f"/ui/runs?before={args.runs // 2}",
            f"run page, {args.stages} stages": f"/ui/runs/{run_id}",
        }
        results = {name: median_ms(base + path, args.repeat) for name, path in cases.items()}
        with urllib.request.urlopen(base + "/ui/runs", timeout=60) as response:
            shown = response.read().decode().count("data-run-id=")
        with urllib.request.urlopen(base + f"/ui/runs/{run_id}", timeout=60) as response:
            boxes = response.read().decode().count('class="stage" data-stage=')
        print(f"the runs page shows {shown} runs; the run page draws {boxes} stages")
    finally:
        server.terminate()
        server.wait(30)
    baseline = results["ping (baseline)"]
    missed = []
    print(f"median of {args.repeat}, ms (x baseline):")
    for name, ms in results.items():
        target = RUN_TARGET_MS if name.startswith("run page") else RUNS_TARGET_MS
        flag = "" if name.startswith("ping") else f"  target {target:.0f}"
        if not name.startswith("ping") and ms > target:
            missed.append(name)
            flag += "  MISSED"
        print(f"  {name:32} {ms:8.1f} ({ms / baseline:6.1f}x){flag}")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
