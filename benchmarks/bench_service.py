"""``flowstage serve`` through its API: run round trip, throughput, idle CPU (issue 16).

Starts a real service (local threads executor, warm) in a subprocess on a free loopback
port with an app directory of its own, applies a one-stage workflow, then measures:

- round trip: POST /workflows/NAME/run (waiting) until the result is back, p50 and p99
  (targets: p50 <= 15 ms, p99 <= 50 ms);
- 1,000 runs submitted by 8 concurrent clients: runs per second, and every run recorded
  finished (none lost, none stuck pending or running);
- idle CPU of the service process over 10 s (target: near zero, no busy polling).

    python benchmarks/bench_service.py [--round-trips 300] [--runs 1000] [--clients 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from servers import Server  # noqa: E402 - the tests' server helper, found through the path above


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=300)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--idle", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        server = Server(Path(home), max_concurrent_runs="8")
        try:
            server.apply("echo")
            for _ in range(20):  # warm up imports and the store
                server.request("POST", "/workflows/svc_echo/run", {"value": 1})
            times = []
            for i in range(args.round_trips):
                start = time.perf_counter()
                status, record = server.request("POST", "/workflows/svc_echo/run", {"value": i})
                times.append(time.perf_counter() - start)
                assert status == 200 and record["result"] == i, record
            times.sort()
            p50 = statistics.median(times) * 1000
            p99 = times[int(len(times) * 0.99) - 1] * 1000
            print(f"round trip ({args.round_trips} runs): p50 {p50:.1f} ms, p99 {p99:.1f} ms")

            def submit(i: int) -> str:
                status, record = server.request(
                    "POST", "/workflows/svc_echo/run?wait=false", {"value": i}
                )
                assert status == 200, record
                return str(record["uid"])

            start = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                uids = list(pool.map(submit, range(args.runs)))
            submitted = time.perf_counter() - start
            deadline = time.monotonic() + 300
            states: dict[str, str] = {}
            while time.monotonic() < deadline:
                with ThreadPoolExecutor(args.clients) as pool:
                    found = pool.map(lambda u: server.request("GET", f"/workflows/run/{u}"), uids)
                    states = {u: r[1]["state"] for u, r in zip(uids, found, strict=True)}
                if all(s not in ("pending", "running") for s in states.values()):
                    break
                time.sleep(0.5)
            done = time.perf_counter() - start
            counts = {s: list(states.values()).count(s) for s in set(states.values())}
            print(
                f"{args.runs} runs, {args.clients} clients: submitted in {submitted:.2f} s, "
                f"all ended in {done:.2f} s ({args.runs / done:.0f} runs/s); states {counts}"
            )
            time.sleep(1.0)
            before = cpu_seconds(server.process.pid)
            time.sleep(args.idle)
            used = cpu_seconds(server.process.pid) - before
            print(f"idle CPU over {args.idle:.0f} s: {used:.3f} s ({used / args.idle:.2%})")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
