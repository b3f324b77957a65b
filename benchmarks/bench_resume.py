"""What a retry costs: a 100-stage chain that failed at stage 100, retried.

The retry reuses the 99 finished stages' outputs and calls only stage 100, so its time
should be within 2x of running that one stage alone as a workflow of its own (run
start-up included). Both are timed ``--rounds`` times, with an executor started for each
run (plain ``run_workflow``) and with one shared executor. A round times the retry and
then the stage alone, each after a garbage collection outside the timed part (so neither
pays for the garbage of the failing run before it); the ratio reported is the median of
the rounds' ratios, so that drift of the machine's speed between rounds (other processes
on a shared machine) cancels out.

Usage: ``python benchmarks/bench_resume.py [--stages 100] [--rounds 21]``
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

FLAG = Path(tempfile.gettempdir()) / f"bench_resume_flag.{os.getpid()}"


def start(x: int) -> int:
    return x


def step(x: int) -> int:
    return x + 1


def last(x: int) -> int:
    if FLAG.exists():
        raise RuntimeError("the flag is there")
    return x * 10


def chain(stages: int) -> dict[str, Any]:
    specs: list[dict[str, Any]] = [{"name": "s1", "target": start}]
    for i in range(2, stages):
        specs.append({"name": f"s{i}", "target": step, "depends_on": [f"s{i - 1}"]})
    specs.append({"name": f"s{stages}", "target": last, "depends_on": [f"s{stages - 1}"]})
    return {"metadata": {"name": "bench_chain"}, "spec": {"stages": specs}}


ALONE = {"metadata": {"name": "bench_alone"}, "spec": {"stages": [{"name": "s", "target": last}]}}


def measure(stages: int, rounds: int, executor: Any) -> tuple[float, float, float, float]:
    """Median seconds of ``(retry, the last stage alone, the whole chain)``, and the
    median of the rounds' ratios retry / alone."""
    from flowstage import retry_run, run_workflow

    workflow = chain(stages)
    retries, alone, whole = [], [], []
    for _ in range(rounds):
        FLAG.touch()
        began = time.perf_counter()
        failed = run_workflow(workflow, {"x": 0}, executor=executor, return_run=True)
        whole.append(time.perf_counter() - began)
        assert failed.state == "failed", failed.state
        FLAG.unlink()
        gc.collect()
        began = time.perf_counter()
        result = retry_run(failed.id, workflow=workflow, executor=executor)
        retries.append(time.perf_counter() - began)
        assert result == (stages - 2) * 10, result
        gc.collect()
        began = time.perf_counter()
        assert run_workflow(ALONE, {"x": 1}, executor=executor) == 10
        alone.append(time.perf_counter() - began)
    ratio = statistics.median(r / a for r, a in zip(retries, alone, strict=True))
    median = statistics.median
    return median(retries), median(alone), median(whole), ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args()
    os.environ.setdefault("FLOWSTAGE_HOME", tempfile.mkdtemp(prefix="bench_resume_"))
    from flowstage import create_executor

    with create_executor("local") as shared:
        for label, executor in (("executor per run", None), ("shared executor", shared)):
            retry, alone, whole, ratio = measure(args.stages, args.rounds, executor)
            print(
                f"{label}: retry {retry * 1000:.1f} ms, last stage alone {alone * 1000:.1f} ms, "
                f"ratio {ratio:.2f} (target <= 2); "
                f"the failing {args.stages}-stage run {whole * 1000:.1f} ms"
            )


if __name__ == "__main__":
    main()
