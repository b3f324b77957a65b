"""flowstage on Dask and on Ray against the raw engine doing the same work.

Run: ``python benchmarks/bench_engines.py [--repeat N] [--workers N]``

Workloads (each timed end to end from the driver, median of ``--repeat`` runs after a
warm-up run; raw and flowstage runs come in pairs, and the ratio reported is the median
of the pairs' ratios, so that drift of the machine's speed between pairs cancels out):

- ``map 1,000`` / ``map 10,000``: a trivial function over 1,000 / 10,000 integers
  (raw: ``client.map`` + ``client.gather``; ``ray.remote`` + ``ray.get``)
- ``16 x sleep 0.1s``: 16 items that each sleep 0.1 s
- ``chain of 100``: 100 stages, each adding one to the previous stage's output
  (raw: 100 dependent ``submit``/``.remote`` calls, futures/refs passed along)
- ``large result``: one stage returns 200,000 small dicts (about 11 MB pickled), the
  next counts them (raw: two dependent calls): what a stage's output costs to keep and
  pass on

Both sides use the same started cluster (flowstage's executor), so the ratio is the
cost flowstage adds: workflow loading and validation, the scheduler, batching and the
worker-side call wrapper. Engine start-up is reported on its own.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

SLEEP = 0.1
#: rows in the large result
LARGE = 200_000


def double(x: int) -> int:
    return x * 2


def nap(x: float) -> float:
    time.sleep(x)
    return x


def one() -> int:
    return 1


def inc(x: int) -> int:
    return x + 1


def rows(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"row {i}", "value": i * 0.5, "tags": ["a", "b"]} for i in range(n)]


def count(values: list[Any]) -> int:
    return len(values)


def map_workflow(fn: Callable[..., Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": f"bench_map_{fn.__name__}"},
        "spec": {
            "stages": [{"name": "mapped", "target": fn, "type": "parameterized", "map_on": "items"}]
        },
    }


def chain_workflow(length: int) -> dict[str, Any]:
    stages: list[dict[str, Any]] = [{"name": "s0", "target": one}]
    for i in range(1, length):
        stages.append({"name": f"s{i}", "target": inc, "depends_on": [f"s{i - 1}"]})
    return {"metadata": {"name": f"bench_chain_{length}"}, "spec": {"stages": stages}}


def pair_workflow(n: int) -> dict[str, Any]:
    stages = [
        {"name": "rows", "target": rows},
        {"name": "count", "target": count, "depends_on": ["rows"]},
    ]
    return {"metadata": {"name": "bench_large_result"}, "spec": {"stages": stages}}


def timed_pair(
    raw: Callable[[], Any], ours: Callable[[], Any], repeat: int, expected: Any
) -> tuple[float, float, float]:
    """Median seconds of ``raw`` and of ``ours`` over ``repeat`` pairs of runs (after one
    warm-up run each), and the median of the pairs' ratios ``ours / raw``.

    The two runs of a pair follow each other, in alternating order, so both see the same
    machine: the ratio of a pair is not moved by the machine getting slower or faster
    between pairs (shared machines drift by tens of percent within minutes).
    """
    for fn in (raw, ours):
        got = fn()
        if got != expected:
            raise AssertionError(f"wrong result: {str(got)[:200]} != {str(expected)[:200]}")
    times: tuple[list[float], list[float]] = ([], [])
    for pair in range(repeat):
        order = ((raw, times[0]), (ours, times[1]))
        for fn, bucket in order if pair % 2 == 0 else order[::-1]:
            began = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - began)
    ratio = statistics.median(o / r for r, o in zip(*times, strict=True))
    return statistics.median(times[0]), statistics.median(times[1]), ratio


def workloads() -> list[tuple[str, str, Any, Any]]:
    """``(name, kind, argument, expected result)``."""
    return [
        ("map 1,000", "map", 1_000, [2 * i for i in range(1_000)]),
        ("map 10,000", "map", 10_000, [2 * i for i in range(10_000)]),
        ("16 x sleep 0.1s", "sleep", 16, [SLEEP] * 16),
        ("chain of 100", "chain", 100, 100),
        ("large result", "large", LARGE, LARGE),
    ]


def flowstage_runner(executor: Any, kind: str, arg: Any) -> Callable[[], Any]:
    from flowstage import run_workflow

    if kind == "map":
        wf, data = map_workflow(double), {"items": list(range(arg))}
    elif kind == "sleep":
        wf, data = map_workflow(nap), {"items": [SLEEP] * arg}
    elif kind == "large":
        wf, data = pair_workflow(arg), {"n": arg}
    else:
        wf, data = chain_workflow(arg), {}
    return lambda: run_workflow(wf, data, executor=executor, record=False)


def dask_runner(client: Any, kind: str, arg: Any) -> Callable[[], Any]:
    if kind == "map":
        return lambda: client.gather(client.map(double, range(arg), pure=False))
    if kind == "sleep":
        return lambda: client.gather(client.map(nap, [SLEEP] * arg, pure=False))
    if kind == "large":
        return lambda: client.submit(
            count, client.submit(rows, arg, pure=False), pure=False
        ).result()

    def chain() -> Any:
        future = client.submit(one, pure=False)
        for _ in range(arg - 1):
            future = client.submit(inc, future, pure=False)
        return future.result()

    return chain


def ray_runner(ray: Any, kind: str, arg: Any) -> Callable[[], Any]:
    remote_double, remote_nap = ray.remote(double), ray.remote(nap)
    remote_one, remote_inc = ray.remote(one), ray.remote(inc)
    if kind == "map":
        return lambda: ray.get([remote_double.remote(i) for i in range(arg)])
    if kind == "sleep":
        return lambda: ray.get([remote_nap.remote(SLEEP) for _ in range(arg)])
    if kind == "large":
        remote_rows, remote_count = ray.remote(rows), ray.remote(count)
        return lambda: ray.get(remote_count.remote(remote_rows.remote(arg)))

    def chain() -> Any:
        ref = remote_one.remote()
        for _ in range(arg - 1):
            ref = remote_inc.remote(ref)
        return ray.get(ref)

    return chain


def bench_engine(
    name: str, spec: dict[str, Any], repeat: int
) -> tuple[float, dict[str, tuple[float, float, float]]]:
    from flowstage import create_executor

    began = time.perf_counter()
    executor = create_executor(spec)
    executor.start()
    startup = time.perf_counter() - began
    results: dict[str, tuple[float, float, float]] = {}
    try:
        if name == "dask":
            raw_client: Any = executor._client  # the same cluster, driven directly

            def make_raw(kind: str, arg: Any) -> Callable[[], Any]:
                return dask_runner(raw_client, kind, arg)
        else:
            import ray

            def make_raw(kind: str, arg: Any) -> Callable[[], Any]:
                return ray_runner(ray, kind, arg)

        for label, kind, arg, expected in workloads():
            raw, ours, ratio = timed_pair(
                make_raw(kind, arg), flowstage_runner(executor, kind, arg), repeat, expected
            )
            results[label] = (raw, ours, ratio)
            print(
                f"  {name:5} {label:16} raw {raw:7.3f}s  flowstage {ours:7.3f}s  ({ratio:.2f}x)",
                file=sys.stderr,
                flush=True,
            )
    finally:
        executor.close()
    return startup, results


def stage_hook_plugins() -> list[str]:
    """Installed plugins that implement per-stage hooks: the driver calls them for every
    stage, which a chain of small stages shows (they are not flowstage's own cost)."""
    from flowstage.core.plugin_manager import default_plugins

    plugins = default_plugins()
    names = set()
    for hook in ("flowstage_stage_started", "flowstage_stage_finished"):
        for impl in getattr(plugins.pm.hook, hook).get_hookimpls():
            names.add(impl.plugin_name)
    return sorted(names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeat", type=int, default=5, help="timed runs per workload (median is reported)"
    )
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 2, help="Dask workers / Ray CPUs"
    )
    parser.add_argument("--engines", default="dask,ray", help="comma-separated: dask, ray")
    args = parser.parse_args()
    os.environ.setdefault(
        "FLOWSTAGE_HOME", os.path.join(os.path.expanduser("~"), ".flowstage-bench")
    )

    specs = {
        "dask": {"name": "dask", "n_workers": args.workers},
        "ray": {"name": "ray", "num_cpus": args.workers},
    }
    table: dict[str, tuple[float, dict[str, tuple[float, float, float]]]] = {}
    for name in args.engines.split(","):
        table[name] = bench_engine(name, specs[name], args.repeat)

    engines = list(table)
    print(
        f"\n{os.cpu_count()} cores, {args.workers} workers, median of {args.repeat} runs "
        "(ratio: the median of the pairs' ratios)\n"
    )
    header = (
        "| workload | " + " | ".join(f"raw {e} | flowstage {e} | ratio" for e in engines) + " |"
    )
    print(header)
    print("|" + "---|" * (1 + 3 * len(engines)))
    for label, *_ in workloads():
        cells = []
        for e in engines:
            raw, ours, ratio = table[e][1][label]
            cells.append(f"{raw:.3f}s | {ours:.3f}s | {ratio:.2f}x")
        print(f"| {label} | " + " | ".join(cells) + " |")
    hooked = stage_hook_plugins()
    if hooked:
        print(
            f"\nnote: installed plugins with per-stage hooks ({', '.join(hooked)}) ran in the "
            "driver for every stage: uninstall them to measure flowstage alone"
        )
    print(
        "\nengine start-up (create_executor + start): "
        + ", ".join(f"{e} {table[e][0]:.1f}s" for e in engines)
    )


if __name__ == "__main__":
    main()
