"""Trigger rules in the service (issue 17), in process on the local threads executor:

- trigger lag: 50 schedule rules firing every 2 s (``* * * * * */2``) for ``--seconds``;
  the time from each slot to its run's start, p50 and p99 (target: p99 <= 1 s);
- idle CPU: 50 schedule rules whose next slot is far away, over 10 s (target: near zero);
- condition evaluation: 1,000 condition rules (Flowdapt's ``and``/``eq`` shape, one per
  workflow), the cost per event of finding the matching ones (target: <= 1 ms).

    python benchmarks/bench_triggers.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def schedule(name: str, cron: str) -> dict[str, Any]:
    return {
        "kind": "trigger_rule",
        "metadata": {"name": name},
        "spec": {
            "type": "schedule",
            "rule": [cron],
            "action": {"target": "run_workflow", "parameters": {"workflow": "bench_echo"}},
        },
    }


async def lag(seconds: float) -> list[float]:
    from flowstage.core.events import WORKFLOW_STARTED, Event
    from flowstage.core.settings import ServiceSettings
    from flowstage.service import Service

    lags: list[float] = []

    def on_start(event: Event) -> None:
        if event.type == WORKFLOW_STARTED and event.data["source"] == "trigger":
            now = datetime.now(timezone.utc)
            slot = now.replace(microsecond=0, second=now.second - now.second % 2)
            lags.append((now - slot).total_seconds())

    settings = ServiceSettings(max_concurrent_runs=64)
    service = Service(settings, executor={"name": "local", "max_workers": 8})
    service.subscribe(on_start)
    await service.start()
    await asyncio.sleep(seconds)
    await service.drain(5)
    await service.close()
    return lags


async def idle(seconds: float) -> float:
    from flowstage.core.settings import ServiceSettings
    from flowstage.service import Service

    service = Service(ServiceSettings(), executor={"name": "local", "max_workers": 2})
    await service.start()
    await asyncio.sleep(0.5)
    before = time.process_time()
    await asyncio.sleep(seconds)
    used = time.process_time() - before
    await service.drain(1)
    await service.close()
    return used / seconds * 100


def conditions(rules: int, events: int) -> tuple[float, float]:
    from flowstage.core.events import WORKFLOW_FINISHED, Event
    from flowstage.service.triggers import RuleIndex, evaluate

    trees = [
        {
            "and": [
                {"eq": [{"var": "type"}, WORKFLOW_FINISHED]},
                {"eq": [{"var": "data.workflow"}, f"w{i}"]},
            ]
        }
        for i in range(rules)
    ]
    index: RuleIndex[int] = RuleIndex((tree, i) for i, tree in enumerate(trees))
    sample = [
        Event(WORKFLOW_FINISHED, {"workflow": f"w{n}", "state": "finished"}) for n in range(97)
    ]
    start = time.perf_counter()
    for n in range(events):
        event = sample[n % len(sample)]
        assert index.matches(event.to_dict()) == [n % len(sample)]
    indexed = (time.perf_counter() - start) / events
    start = time.perf_counter()
    for n in range(events // 100):
        data = sample[n % len(sample)].to_dict()
        [t for t in trees if evaluate(t, data)]
    scanned = (time.perf_counter() - start) / (events // 100)
    return indexed, scanned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ["FLOWSTAGE_HOME"] = home
        from flowstage.core.plugin_manager import default_plugins
        from flowstage.state.resources import apply_documents

        echo = {
            "kind": "workflow",
            "metadata": {"name": "bench_echo"},
            "spec": {"stages": [{"name": "echo", "target": "teststages.service.echo"}]},
        }
        rules = [schedule(f"every_2s_{i}", "* * * * * */2") for i in range(50)]
        apply_documents([echo, *rules], default_plugins(), origin="bench")
        lags = sorted(asyncio.run(lag(args.seconds)))
        p99 = lags[int(len(lags) * 0.99) - 1]
        print(
            f"trigger lag, 50 rules every 2 s: {len(lags)} runs, "
            f"p50 {statistics.median(lags) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"
        )
    with tempfile.TemporaryDirectory() as home:
        os.environ["FLOWSTAGE_HOME"] = home
        rules = [schedule(f"yearly_{i}", "0 0 1 1 *") for i in range(50)]
        apply_documents([echo, *rules], default_plugins(), origin="bench")
        print(f"idle CPU, 50 schedule rules, 10 s: {asyncio.run(idle(10.0)):.2f} %")
    indexed, scanned = conditions(1000, 20000)
    print(
        f"condition evaluation, 1,000 rules: {indexed * 1e6:.1f} us/event indexed "
        f"({scanned * 1e6:.0f} us/event evaluating every rule)"
    )


if __name__ == "__main__":
    main()
