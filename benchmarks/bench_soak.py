"""Soak: many runs on one reused executor per kind, looking for leaks.

Run: ``python benchmarks/bench_soak.py [--runs 1000] [--kinds threads,processes,dask,ray]``

Each kind gets one started executor and ``--runs`` runs of a small workflow (a map of 8
items, then a stage that takes their results), recorded in a fresh app directory as
usual. One run in ten goes wrong: every tenth is a stage past its 50 ms timeout, every
tenth (offset by five) a stage that raises. After the first 100 runs (the warm-up: the
engine's workers, caches and the store are up by then) and again at the end, after a
garbage collection and a pause for abandoned calls to end, it reads from ``/proc``: the
driver's threads, open file descriptors and RSS, its entries in ``/dev/shm``, and the
driver's descendant processes. The target: RSS grows by at most 10%, nothing else grows.
``--every N`` also prints the readings every N runs after the warm-up, which tells a
count that wanders (an engine's worker pool) from one that climbs (a leak).
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
#: the /dev/shm entries of each snapshot, to name the ones that appeared
SHM_SEEN: list[set[str]] = []
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


def descendants(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def shm_entries(pids: set[int]) -> set[str]:
    """The ``/dev/shm`` entries of this soak: the files in this driver's shared-memory
    folders (``flowstage-mem-<pid>-...``, the folder counted too) and entries its
    processes hold mapped or open (multiprocessing's semaphores). Other processes on the
    machine (other test runs) create and remove entries too; they are not counted."""
    ours: set[str] = set()
    for name in os.listdir("/dev/shm"):
        if name.startswith(f"flowstage-mem-{os.getpid()}-"):
            ours.add(name)
            for folder, _, files in os.walk(f"/dev/shm/{name}"):
                ours.update(os.path.relpath(f"{folder}/{f}", "/dev/shm") for f in files)
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
            fds = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        for path in [*(line.split(maxsplit=5)[-1] for line in maps.splitlines()), *fds]:
            if path.startswith("/dev/shm/") and not path.endswith("(deleted)"):
                ours.add(path[len("/dev/shm/") :])
    return ours


def snapshot() -> dict[str, float]:
    gc.collect()
    time.sleep(1.0)  # a timed-out call's abandoned thread or process ends meanwhile
    rss_kb = next(
        int(line.split()[1])
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    processes = descendants(os.getpid())
    shm = shm_entries({os.getpid(), *processes})
    SHM_SEEN.append(shm)
    return {
        "threads": len(os.listdir("/proc/self/task")),
        "fds": len(os.listdir("/proc/self/fd")),
        "shm": len(shm),
        "procs": len(processes),
        "rss_mb": rss_kb / 1024,
    }


def soak(
    kind: str, runs: int, every: int
) -> tuple[dict[str, float], dict[str, float], dict[str, int]]:
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
            elif every and i + 1 > WARM_UP and (i + 1 - WARM_UP) % every == 0 and i + 1 < runs:
                seen = snapshot()
                print(f"  {kind} after {i + 1} runs: " + cells(seen), flush=True)
        last = snapshot()
        states["seconds"] = round(time.perf_counter() - started)
    return first, last, states


def cells(reading: dict[str, float]) -> str:
    counts = " ".join(f"{k}={reading[k]:.0f}" for k in ("threads", "fds", "shm", "procs"))
    return f"{counts} rss={reading['rss_mb']:.1f}MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs per kind")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated")
    parser.add_argument("--every", type=int, default=0, help="also print every N runs")
    args = parser.parse_args()
    print(f"app dir {os.environ['FLOWSTAGE_HOME']}; {args.runs} runs per kind, 10% failing")
    print(f"{'kind':<10} {'threads':>9} {'fds':>9} {'shm':>7} {'procs':>7} {'RSS MB':>15} verdict")
    for kind in args.kinds.split(","):
        first, last, states = soak(kind, args.runs, args.every)
        growth = (last["rss_mb"] - first["rss_mb"]) / first["rss_mb"] * 100
        grew = [k for k in ("threads", "fds", "shm", "procs") if last[k] > first[k]]
        verdict = "ok" if growth <= 10 and not grew else f"LEAK ({', '.join(grew) or 'RSS'})"
        if "shm" in grew:
            verdict += f" new in /dev/shm: {sorted(SHM_SEEN[-1] - SHM_SEEN[0])}"
        SHM_SEEN.clear()
        cells = [f"{first[k]:.0f}->{last[k]:.0f}" for k in ("threads", "fds", "shm", "procs")]
        rss = f"{first['rss_mb']:.0f}->{last['rss_mb']:.0f} {growth:+.1f}%"
        print(
            f"{kind:<10} {cells[0]:>9} {cells[1]:>9} {cells[2]:>7} {cells[3]:>7} {rss:>15} "
            f"{verdict}   {states}",
            flush=True,
        )


if __name__ == "__main__":
    main()
