"""How much recording runs in the history costs, and how fast a big history lists.

1. A workflow of one trivial stage run N times (default 1,000) from Python with
   ``record=True`` and with ``record=False``; the ratio must stay at most 1.3. Measured
   with an executor started for each run (plain ``run_workflow(wf)``) and with one
   shared executor (the harder case: the run itself is cheaper). The modes alternate
   in batches of 50 runs and the median batch of each counts, so that noise from other
   processes does not decide the ratio.
2. ``flowstage get runs`` with 100,000 runs in the store (paged, default page): the
   command in-process (``CliRunner`` on ``build_app``), the store query alone, and the
   whole ``flowstage`` process for comparison with ``flowstage --help``.

Usage: ``python benchmarks/bench_record.py [--runs 1000] [--rounds 3] [--history 100000]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def noop() -> int:
    return 1


WORKFLOW = {
    "metadata": {"name": "bench_one"},
    "spec": {"stages": [{"name": "one", "target": noop}]},
}


def time_runs(count: int, record: bool, executor: object) -> float:
    from flowstage import run_workflow

    start = time.perf_counter()
    for _ in range(count):
        run_workflow(WORKFLOW, executor=executor, record=record)
    return time.perf_counter() - start


def bench_recording(count: int, rounds: int, batch: int = 50) -> dict[str, dict[str, float]]:
    """Seconds for ``count`` runs with and without recording, and their ratio.

    The two modes alternate in batches of ``batch`` runs, ``rounds`` times over; the
    median batch of each mode counts, so that a burst of load on the machine lands on
    both modes alike and spikes do not decide the ratio.
    """
    import statistics

    from flowstage import create_executor

    out = {}
    with create_executor("local") as shared:
        for label, executor in (("executor per run", None), ("shared executor", shared)):
            time_runs(50, True, executor)  # warm up imports, the store file and caches
            time_runs(50, False, executor)
            batches: dict[bool, list[float]] = {True: [], False: []}
            for index in range(rounds * max(1, count // batch)):
                order = (False, True) if index % 2 else (True, False)
                for record in order:
                    batches[record].append(time_runs(batch, record, executor))
            scale = count / batch
            plain = statistics.median(batches[False]) * scale
            recorded = statistics.median(batches[True]) * scale
            out[label] = {
                "record=False s": plain,
                "record=True s": recorded,
                "ratio": recorded / plain,
            }
    return out


def fill_history(total: int) -> None:
    """``total`` finished runs, written in one transaction (the setup, not the benchmark)."""
    from datetime import datetime, timedelta, timezone

    from flowstage.state.store import get_store

    store = get_store()
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    stages = json.dumps({"one": {"state": "finished", "attempts": 1}})
    rows = []
    for i in range(total):
        started = base + timedelta(seconds=i)
        rows.append(
            (
                f"hist{i:08d}",
                f"wf{i % 20}",
                "finished" if i % 7 else "failed",
                "api",
                "local",
                "default",
                "{}",
                started.isoformat(),
                started.isoformat(),
                (started + timedelta(seconds=1)).isoformat(),
                stages,
                "json",
                "1",
            )
        )
    with store.write() as conn:
        conn.executemany(
            "INSERT INTO runs (id, workflow, state, source, executor, namespace, input, "
            "created_at, started_at, finished_at, stages, result_kind, result) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


def best_of(fn: object, times: int = 5) -> float:
    best = float("inf")
    for _ in range(times):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best


def bench_listing(total: int) -> dict[str, float]:
    from typer.testing import CliRunner

    from flowstage.cli.app import build_app
    from flowstage.state.store import get_store

    fill_history(total)
    store = get_store()
    app = build_app()
    runner = CliRunner()

    def cli(*args: str) -> None:
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, result.output

    flowstage = str(Path(sys.executable).with_name("flowstage"))

    def process(*args: str) -> None:
        subprocess.run(
            [flowstage, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    return {
        "store.list_runs (first page) s": best_of(lambda: store.list_runs(limit=50)),
        "store.list_runs (page 1000) s": best_of(lambda: store.list_runs(limit=50, offset=50_000)),
        "get runs, in-process CLI (table) s": best_of(lambda: cli("get", "runs")),
        "get runs --format json, in-process CLI s": best_of(
            lambda: cli("get", "runs", "--format", "json")
        ),
        "flowstage get runs, whole process s": best_of(lambda: process("get", "runs"), 3),
        "flowstage --help, whole process s": best_of(lambda: process("--help"), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--history", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ["FLOWSTAGE_HOME"] = home
        recording = bench_recording(args.runs, args.rounds)
        for label, numbers in recording.items():
            print(
                f"{args.runs} one-stage runs, {label}: "
                f"record=False {numbers['record=False s']:.3f}s, "
                f"record=True {numbers['record=True s']:.3f}s, "
                f"ratio {numbers['ratio']:.3f} (limit 1.3)"
            )
    with tempfile.TemporaryDirectory() as home:
        os.environ["FLOWSTAGE_HOME"] = home
        for label, seconds in bench_listing(args.history).items():
            print(f"{args.history} runs stored, {label}: {seconds:.4f}")


if __name__ == "__main__":
    main()
