"""Soak: many runs on one reused executor per kind, looking for leaks.

Run: ``python benchmarks/bench_soak.py [--runs 1000] [--kinds threads,processes,dask,ray]``

Each kind gets one started executor and ``--runs`` runs of a small workflow (a map of 8
items, then a stage that takes their results), recorded in a fresh app directory as
usual. One run in ten goes wrong: every tenth is a stage past its 50 ms timeout, every
tenth (offset by five) a stage that raises. After the first 100 runs (the warm-up: the
engine's workers, caches and the store are up by then) and again at the end, after a
garbage collection and a pause for abandoned calls to end, it reads from ``/proc``: the
driver's threads, open file descriptors and RSS, the entries in ``/dev/shm``, and the
driver's descendant processes. The target: RSS grows by at most 10%, nothing else grows.
This is a script, not a test: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
#: stage functions importable in every worker process (spawned ones read PYTHONPATH)
sys.path.insert(0, str(HERE))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
os.environ.setdefault("FLOWSTAGE_HOME", tempfile.mkdtemp(prefix="flowstage-soak-"))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from flowstage import create_executor, run_workflow  # noqa: E402 - after PYTHONPATH is set

KINDS: dict[str, dict[str, Any]] = {
    "threads": {"name": "local", "max_workers": 2},
    "processes": {"name": "local", "processes": True, "max_workers": 2},
    "dask": {"name": "dask", "n_workers": 2},
    "ray": {"name": "ray", "num_cpus": 2},
}
WARM_UP = 100
B = "benchstages."


def workflow(i: int) -> dict[str, Any]:
    """The workflow of run ``i``: one in ten times out, one in ten fails."""
    if i % 10 == 0:
        last = {"name": "late", "target": B + "nap", "depends_on": ["count"], "timeout": "50ms"}
    elif i % 10 == 5:
        last = {"name": "broken", "target": B + "boom", "depends_on": ["count"]}
    else:
        last = {"name": "again", "target": B + "trivial", "depends_on": ["count"]}
    stages = [
        {"name": "mapped", "target": B + "trivial", "type": "parameterized", "map_on": "x"},
        {"name": "count", "target": B + "count_args", "depends_on": ["mapped"]},
        last,
    ]
    return {"metadata": {"name": "soak"}, "spec": {"stages": stages}}


def descendants(pid: int) -> int:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = 0, {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found += len(frontier)
    return found


def snapshot() -> dict[str, float]:
    gc.collect()
    time.sleep(1.0)  # a timed-out call's abandoned thread or process ends meanwhile
    rss_kb = next(
        int(line.split()[1])
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    return {
        "threads": len(os.listdir("/proc/self/task")),
        "fds": len(os.listdir("/proc/self/fd")),
        "shm": len(os.listdir("/dev/shm")),
        "procs": descendants(os.getpid()),
        "rss_mb": rss_kb / 1024,
    }


def soak(kind: str, runs: int) -> tuple[dict[str, float], dict[str, float], dict[str, int]]:
    states: dict[str, int] = {}
    first: dict[str, float] = {}
    with create_executor(dict(KINDS[kind])) as executor:
        started = time.perf_counter()
        for i in range(runs):
            run = run_workflow(
                workflow(i), {"x": list(range(8))}, executor=executor, return_run=True
            )
            states[run.state] = states.get(run.state, 0) + 1
            if i + 1 == min(WARM_UP, runs):
                first = snapshot()
        last = snapshot()
        states["seconds"] = round(time.perf_counter() - started)
    return first, last, states


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs per kind")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated")
    args = parser.parse_args()
    print(f"app dir {os.environ['FLOWSTAGE_HOME']}; {args.runs} runs per kind, 10% failing")
    print(f"{'kind':<10} {'threads':>9} {'fds':>9} {'shm':>7} {'procs':>7} {'RSS MB':>15} verdict")
    for kind in args.kinds.split(","):
        first, last, states = soak(kind, args.runs)
        growth = (last["rss_mb"] - first["rss_mb"]) / first["rss_mb"] * 100
        grew = [k for k in ("threads", "fds", "shm", "procs") if last[k] > first[k]]
        verdict = "ok" if growth <= 10 and not grew else f"LEAK ({', '.join(grew) or 'RSS'})"
        cells = [f"{first[k]:.0f}->{last[k]:.0f}" for k in ("threads", "fds", "shm", "procs")]
        rss = f"{first['rss_mb']:.0f}->{last['rss_mb']:.0f} {growth:+.1f}%"
        print(
            f"{kind:<10} {cells[0]:>9} {cells[1]:>9} {cells[2]:>7} {cells[3]:>7} {rss:>15} "
            f"{verdict}   {states}",
            flush=True,
        )


if __name__ == "__main__":
    main()
