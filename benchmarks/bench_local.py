"""flowstage's local executor against the raw engines, in one process and one run.

    python benchmarks/bench_local.py            # all workloads
    python benchmarks/bench_local.py --quick    # smaller sizes

Prints times and ratios (flowstage / raw): ratios, not absolute times, are what to
compare across machines. Workloads (issue 2):
  a) a chain of 100 trivial stages            raw: 100 sequential pool round trips
  b) a map over 1k / 10k / 100k trivial items raw: plain loop, ThreadPoolExecutor.map,
                                              ProcessPoolExecutor.map(chunksize)
  c) 16 items sleeping 0.1 s, 16 workers      raw: ThreadPoolExecutor(16).map
  d) one source, 50 parallel stages, one sink raw: pool submit + gather
  memory: peak traced memory of a 1,000,000-item map vs its input and output lists
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import os
import sys
import time
import tracemalloc
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchstages

from flowstage import create_executor, run_workflow


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


def row(name: str, ours: float, raw: float, raw_name: str, note: str = "") -> None:
    print(
        f"{name:<38} {ours * 1000:>9.1f} ms  {raw_name:<24} {raw * 1000:>9.1f} ms  "
        f"{ours / raw:>6.2f}x  {note}"
    )


def chain_workflow(n: int) -> dict:
    stages = [{"name": "s0", "target": "benchstages.inc_root"}]
    stages += [
        {"name": f"s{i}", "target": "benchstages.inc", "depends_on": [f"s{i - 1}"]}
        for i in range(1, n)
    ]
    return {"metadata": {"name": "chain"}, "spec": {"stages": stages}}


def map_workflow() -> dict:
    return {
        "metadata": {"name": "map"},
        "spec": {
            "stages": [
                {
                    "name": "m",
                    "target": "benchstages.trivial",
                    "type": "parameterized",
                    "map_on": "xs",
                }
            ]
        },
    }


def sleep_workflow() -> dict:
    return {
        "metadata": {"name": "sleep"},
        "spec": {
            "stages": [
                {
                    "name": "m",
                    "target": "benchstages.sleep_tenth",
                    "type": "parameterized",
                    "map_on": "xs",
                }
            ]
        },
    }


def fan_workflow(width: int) -> dict:
    stages = [{"name": "source", "target": "benchstages.inc_root"}]
    stages += [
        {"name": f"p{i}", "target": "benchstages.inc", "depends_on": ["source"]}
        for i in range(width)
    ]
    stages.append(
        {
            "name": "sink",
            "target": "benchstages.count_args",
            "depends_on": [f"p{i}" for i in range(width)],
        }
    )
    return {"metadata": {"name": "fan"}, "spec": {"stages": stages}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    cores = os.cpu_count() or 1
    print(f"python {sys.version.split()[0]}, {cores} cores; best of 3\n")
    print(f"{'workload':<38} {'flowstage':>12}  {'raw':<24} {'':>12}  {'ratio':>7}")

    with (
        create_executor({"name": "local"}) as threads,
        concurrent.futures.ThreadPoolExecutor(cores) as pool,
    ):
        run = lambda wf, data=None, ex=threads: run_workflow(wf, data, executor=ex, record=False)  # noqa: E731
        # a) chain
        chain = chain_workflow(100)
        run(chain)

        def raw_chain() -> None:
            value = pool.submit(benchstages.inc_root).result()
            for _ in range(99):
                value = pool.submit(benchstages.inc, value).result()

        ours, raw = best_of(lambda: run(chain)), best_of(raw_chain)
        per_stage = (ours - raw) / 100 * 1000
        row(
            "a) chain of 100 stages (threads)",
            ours,
            raw,
            "pool round trips",
            f"overhead {per_stage:.3f} ms/stage (target < 0.2)",
        )

        # b) maps
        for n in sizes:
            items = list(range(n))
            wf = map_workflow()
            ours = best_of(lambda wf=wf, items=items: run(wf, {"xs": items}))
            loop = best_of(lambda items=items: [benchstages.trivial(x) for x in items])
            tpe = best_of(lambda items=items: list(pool.map(benchstages.trivial, items)))
            budget = 1.5 * loop + 0.2
            row(
                f"b) map {n:>7,} trivial items (threads)",
                ours,
                loop,
                "plain loop",
                f"target <= {budget * 1000:.0f} ms: {'ok' if ours <= budget else 'MISSED'}",
            )
            row(f"   map {n:>7,} trivial items (threads)", ours, tpe, "ThreadPoolExecutor.map")

        # c) sleeps
    with (
        create_executor({"name": "local", "max_workers": 16}) as wide,
        concurrent.futures.ThreadPoolExecutor(16) as pool16,
    ):
        items = list(range(16))
        wf = sleep_workflow()
        run_workflow(wf, {"xs": items}, executor=wide, record=False)
        ours = best_of(lambda: run_workflow(wf, {"xs": items}, executor=wide, record=False))
        raw = best_of(lambda: list(pool16.map(benchstages.sleep_tenth, items)))
        row(
            "c) 16 items x sleep 0.1 s, 16 workers",
            ours,
            raw,
            "ThreadPoolExecutor(16)",
            f"target < 250 ms: {'ok' if ours < 0.25 else 'MISSED'}",
        )

    with (
        create_executor({"name": "local"}) as threads,
        concurrent.futures.ThreadPoolExecutor(cores) as pool,
    ):
        # d) fan out / fan in
        fan = fan_workflow(50)
        run_workflow(fan, executor=threads, record=False)

        def raw_fan() -> None:
            source = pool.submit(benchstages.inc_root).result()
            parts = [pool.submit(benchstages.inc, source) for _ in range(50)]
            pool.submit(benchstages.count_args, *[p.result() for p in parts]).result()

        ours = best_of(lambda: run_workflow(fan, executor=threads, record=False))
        row("d) 1 source, 50 parallel, 1 sink", ours, best_of(raw_fan), "pool submit + gather")

    # processes
    with (
        create_executor({"name": "local", "processes": True}) as procs,
        concurrent.futures.ProcessPoolExecutor(cores) as ppool,
    ):
        list(ppool.map(benchstages.trivial, range(cores)))
        for n in sizes:
            items = list(range(n))
            wf = map_workflow()
            run_workflow(wf, {"xs": items[:10]}, executor=procs, record=False)
            ours = best_of(
                lambda wf=wf, items=items: run_workflow(
                    wf, {"xs": items}, executor=procs, record=False
                )
            )
            chunk = max(1, n // (4 * cores))
            raw = best_of(
                lambda items=items, chunk=chunk: list(
                    ppool.map(benchstages.trivial, items, chunksize=chunk)
                )
            )
            row(
                f"b) map {n:>7,} trivial items (processes)",
                ours,
                raw,
                f"PPE.map(chunksize={chunk})",
            )

    memory(1_000_000 if not args.quick else 200_000)


def memory(n: int) -> None:
    """Peak memory of a map over ``n`` small items vs its input and output lists."""
    wf = map_workflow()
    with create_executor({"name": "local"}) as threads:
        run_workflow(wf, {"xs": list(range(10))}, executor=threads, record=False)
        gc.collect()
        tracemalloc.start()
        items = list(range(n))
        baseline_in = tracemalloc.get_traced_memory()[0]
        expected = [benchstages.trivial(x) for x in items]
        lists = tracemalloc.get_traced_memory()[0]  # input + output lists
        del expected
        gc.collect()
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        result = run_workflow(wf, {"xs": items}, executor=threads, record=False)
        peak = tracemalloc.get_traced_memory()[1] - before + baseline_in
        tracemalloc.stop()
        assert len(result) == n
    print(
        f"\nmemory: map over {n:,} items: peak {peak / 2**20:.1f} MiB vs input+output lists "
        f"{lists / 2**20:.1f} MiB: {peak / lists:.2f}x (target <= ~3x)"
    )


if __name__ == "__main__":
    main()
