"""What the stage cache costs on a miss, and what a fully cached rerun costs.

(a) A stage that takes 10 ms, given a 1 KB argument, run as a one-stage workflow with
    ``cache: true`` (a new argument every round: always a miss, so the key is computed,
    looked up and the result written) and without ``cache:``. The difference of the
    median run times is the overhead of a miss (target <= 1 ms); the cache's own steps
    (key, lookup, write) are also timed alone, which noise on a busy machine does not blur.
(b) A 100-stage chain of trivial stages, all with ``cache: true``, rerun once every
    stage is stored (every stage a hit), against the same chain without ``cache:``
    (every stage called). The ratio of medians has a target of <= 3.

Usage: ``python benchmarks/bench_cache.py [--rounds 31] [--stages 100]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from typing import Any

PAYLOAD = "x" * 1024


def slow(payload: str, n: int) -> int:
    time.sleep(0.01)
    return len(payload) + n


def start(x: int) -> int:
    return x


def step(x: int) -> int:
    return x + 1


def one_stage(cache: bool) -> dict[str, Any]:
    stage: dict[str, Any] = {"name": "slow", "target": slow}
    if cache:
        stage["cache"] = True
    return {"metadata": {"name": f"bench_slow_{int(cache)}"}, "spec": {"stages": [stage]}}


def chain(stages: int, cache: bool) -> dict[str, Any]:
    specs: list[dict[str, Any]] = [{"name": "s1", "target": start}]
    for i in range(2, stages + 1):
        specs.append({"name": f"s{i}", "target": step, "depends_on": [f"s{i - 1}"]})
    if cache:
        for spec in specs:
            spec["cache"] = True
    return {"metadata": {"name": f"bench_chain_{int(cache)}"}, "spec": {"stages": specs}}


def timed(fn: Any, *args: Any, **kwargs: Any) -> float:
    began = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - began


def miss_overhead(rounds: int, executor: Any) -> tuple[float, float, float]:
    """Median seconds of a run of the 10 ms stage ``(cached: a miss, not cached, and
    the difference within pairs)``: the two alternate, so that drifts in the machine's
    load hit both alike, and the median of paired differences discounts the rest."""
    from flowstage import run_workflow

    cached, plain = one_stage(True), one_stage(False)
    misses, uncached = [], []
    for n in range(rounds):
        payload = f"{uuid.uuid4().hex}{PAYLOAD}"[:1024]  # a new key every round
        misses.append(timed(run_workflow, cached, {"payload": payload, "n": n}, executor=executor))
        uncached.append(timed(run_workflow, plain, {"payload": payload, "n": n}, executor=executor))
    paired = statistics.median(m - u for m, u in zip(misses, uncached, strict=True))
    return statistics.median(misses), statistics.median(uncached), paired


def cache_steps(rounds: int) -> float:
    """Median seconds of the cache's own work on a miss: the key of a 1 KB argument,
    the lookup, and writing the result."""
    from flowstage.core.caching import RunCache
    from flowstage.core.models import Stage
    from flowstage.storage.scope import run_settings
    from flowstage.storage.stage_cache import ArtifactCacheStore

    store = ArtifactCacheStore.from_settings(run_settings()["artifacts"])
    stage = Stage(name="slow", target=slow, cache=True)
    samples = []
    salt = uuid.uuid4().hex  # new keys on every call of this function
    for n in range(rounds * 10):
        began = time.perf_counter()
        cache = RunCache(store, "use", {"factor": 1}, (), "bench").for_stage(stage)
        assert cache is not None
        key = cache.call_key([], {"payload": f"{salt}{n:08d}{PAYLOAD}"[:1024], "n": n})
        assert not cache.lookup([key])
        cache.save(key, 1024 + n)
        samples.append(time.perf_counter() - began)
    return statistics.median(samples)


def cached_chain(stages: int, rounds: int, executor: Any) -> tuple[float, float]:
    """Median seconds of ``(the cached chain rerun, all hits; the uncached chain)``."""
    from flowstage import run_workflow

    cached, plain = chain(stages, True), chain(stages, False)
    first = run_workflow(cached, {"x": 0}, executor=executor, return_run=True)
    assert first.result == stages - 1, first.error
    hits, calls = [], []
    for _ in range(rounds):
        began = time.perf_counter()
        run = run_workflow(cached, {"x": 0}, executor=executor, return_run=True)
        hits.append(time.perf_counter() - began)
        assert all(s.state == "cached" for s in run.stages.values())
        calls.append(timed(run_workflow, plain, {"x": 0}, executor=executor))
    return statistics.median(hits), statistics.median(calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=61)
    parser.add_argument("--stages", type=int, default=100)
    args = parser.parse_args()
    os.environ.setdefault("FLOWSTAGE_HOME", tempfile.mkdtemp(prefix="bench_cache_"))
    from flowstage import create_executor

    steps = cache_steps(args.rounds)
    print(f"(a) the cache's own work on a miss (key of 1 KB, lookup, write): {steps * 1e3:.3f} ms")
    for label, spec in (("threads", "local"), ("processes", {"name": "local", "processes": True})):
        with create_executor(spec) as executor:
            miss, plain, paired = miss_overhead(args.rounds, executor)
            print(
                f"(a) {label}: 10 ms stage, cached (a miss) {miss * 1e3:.2f} ms, "
                f"uncached {plain * 1e3:.2f} ms: overhead {paired * 1e3:.2f} ms "
                "(median of paired differences; target <= 1 ms)"
            )
            hit, called = cached_chain(args.stages, args.rounds, executor)
            print(
                f"(b) {label}: {args.stages}-stage chain, all cached {hit * 1e3:.1f} ms, "
                f"uncached {called * 1e3:.1f} ms: ratio {hit / called:.2f} (target <= 3)"
            )


if __name__ == "__main__":
    main()
