"""The object store against the raw mechanisms: a 100 MB NumPy array passed from one
stage to the next (issue 6).

    python benchmarks/bench_object_store.py              # 100 MB, 5 repetitions
    python benchmarks/bench_object_store.py --mb 20 -r 3

For each case the cost is the time ``put`` takes in the first stage plus the time
``get`` takes in the second, timed inside the workers (so task scheduling is left out
on both sides), and the consumer reads the whole array once (``a.sum()``) inside the
timed ``get`` on both sides, so lazily mapped and copied data are compared fairly.
Medians of the repetitions; targets are ratios (flowstage / raw):

  ray, cluster_memory         vs ray.put in one task, ray.get in another       <= 2x
  local processes, cluster_memory vs a SharedMemory copy in, a copy out    <= 2x
  local disk, artifact        vs pickle.dump to a file, pickle.load from it   <= 1.5x
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
#: between repetitions, so that one repetition's background work (freeing, Ray's copies)
#: does not land in the next one's timings
PAUSE = 0.5


# stages (this module is imported by the workers) ---------------------------------------


def _array(mb: int) -> Any:
    import numpy as np

    return np.random.default_rng(0).random(mb * 1024 * 1024 // 8)


def put_stage(mb: int, strategy: str, key: str) -> float:
    from flowstage import object_store

    array = _array(mb)
    began = time.perf_counter()
    object_store.put(key, array, strategy=strategy)
    return time.perf_counter() - began


def get_stage(put_seconds: float) -> tuple[float, float]:
    from flowstage import get_run_context, object_store

    context = get_run_context()
    began = time.perf_counter()
    array = object_store.get(context.input["key"], strategy=context.input["strategy"])
    array.sum()
    return put_seconds, time.perf_counter() - began


def workflow() -> dict[str, Any]:
    return {
        "metadata": {"name": "pass_array"},
        "spec": {
            "stages": [
                {"name": "produce", "target": "bench_object_store.put_stage"},
                {
                    "name": "consume",
                    "target": "bench_object_store.get_stage",
                    "depends_on": ["produce"],
                },
            ]
        },
    }


def flowstage_case(executor: Any, mb: int, strategy: str, repeat: int) -> list[tuple[float, float]]:
    from flowstage import object_store, run_workflow

    out = []
    for i in range(repeat):
        key = f"bench/{i}"
        out.append(
            run_workflow(
                workflow(),
                {"mb": mb, "strategy": strategy, "key": key},
                executor=executor,
                record=False,
            )
        )
        object_store.delete(key, strategy=strategy, executor=executor)
        time.sleep(PAUSE)
    return out


# raw baselines ---------------------------------------------------------------------------


def raw_ray(mb: int, repeat: int) -> list[tuple[float, float]]:
    import ray

    @ray.remote
    def produce(mb: int) -> tuple[list[Any], float]:
        array = _array(mb)
        began = time.perf_counter()
        ref = ray.put(array)
        return [ref], time.perf_counter() - began

    @ray.remote
    def consume(boxed: list[Any]) -> float:
        began = time.perf_counter()
        ray.get(boxed[0]).sum()
        return time.perf_counter() - began

    out = []
    for _ in range(repeat):
        boxed, put_seconds = ray.get(produce.remote(mb))
        out.append((put_seconds, ray.get(consume.remote(boxed))))
        del boxed
        time.sleep(PAUSE)
    return out


def shm_produce(mb: int) -> tuple[str, float]:
    from multiprocessing import shared_memory

    import numpy as np

    array = _array(mb)
    began = time.perf_counter()
    shm = shared_memory.SharedMemory(create=True, size=array.nbytes)
    np.ndarray(array.shape, array.dtype, buffer=shm.buf)[:] = array
    seconds = time.perf_counter() - began
    shm.close()  # the consumer unlinks it
    return shm.name, seconds


def shm_consume(name: str, mb: int) -> float:
    from multiprocessing import shared_memory

    import numpy as np

    began = time.perf_counter()
    shm = shared_memory.SharedMemory(name=name)
    view = np.ndarray((mb * 1024 * 1024 // 8,), "float64", buffer=shm.buf)
    array = view.copy()
    array.sum()
    seconds = time.perf_counter() - began
    del view
    shm.close()
    shm.unlink()
    return seconds


def raw_shared_memory(mb: int, repeat: int) -> list[tuple[float, float]]:
    context = multiprocessing.get_context("spawn")
    out = []
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
        for _ in range(repeat):
            name, put_seconds = pool.submit(shm_produce, mb).result()
            out.append((put_seconds, pool.submit(shm_consume, name, mb).result()))
            time.sleep(PAUSE)
    return out


def raw_pickle_file(mb: int, repeat: int, folder: str) -> list[tuple[float, float]]:
    import pickle

    out = []
    for i in range(repeat):
        array = _array(mb)
        path = os.path.join(folder, f"raw-{i}.pkl")
        began = time.perf_counter()
        with open(path, "wb") as f:
            pickle.dump(array, f, protocol=5)
        put_seconds = time.perf_counter() - began
        del array
        began = time.perf_counter()
        with open(path, "rb") as f:
            pickle.load(f).sum()
        out.append((put_seconds, time.perf_counter() - began))
        os.unlink(path)
        time.sleep(PAUSE)
    return out


# report ------------------------------------------------------------------------------------


def median(pairs: list[tuple[float, float]]) -> tuple[float, float, float]:
    puts, gets = [p for p, _ in pairs], [g for _, g in pairs]
    return (
        statistics.median(puts),
        statistics.median(gets),
        statistics.median(p + g for p, g in pairs),
    )


def report(
    name: str,
    ours: list[tuple[float, float]],
    raw: list[tuple[float, float]],
    raw_name: str,
    target: float,
) -> bool:
    o_put, o_get, o_total = median(ours)
    r_put, r_get, r_total = median(raw)
    ratio = o_total / r_total
    ok = ratio <= target
    print(
        f"{name:<34} put {o_put * 1e3:7.1f} get {o_get * 1e3:7.1f} = {o_total * 1e3:7.1f} ms | "
        f"{raw_name:<24} put {r_put * 1e3:7.1f} get {r_get * 1e3:7.1f} = {r_total * 1e3:7.1f} ms | "
        f"{ratio:5.2f}x (target <= {target}x) {'ok' if ok else 'MISSED'}"
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="array size in MB (default 100)")
    parser.add_argument(
        "-r", "--repeat", type=int, default=5, help="repetitions per case (default 5)"
    )
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()

    # Workers (spawned processes, Ray workers) import this module as bench_object_store.
    sys.path.insert(0, HERE)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [HERE, os.environ.get("PYTHONPATH")]))
    home = tempfile.mkdtemp(prefix="flowstage-bench-")
    os.environ["FLOWSTAGE_HOME"] = home  # artifacts on this machine's local disk

    from flowstage import create_executor

    print(f"passing a {args.mb} MB float64 array between two stages, median of {args.repeat}")
    ok = True
    with create_executor({"name": "local", "processes": True, "max_workers": 2}) as executor:
        flowstage_case(executor, args.mb, "cluster_memory", 1)  # warm the workers
        ours = flowstage_case(executor, args.mb, "cluster_memory", args.repeat)
    ok &= report(
        "local processes, cluster_memory",
        ours,
        raw_shared_memory(args.mb, args.repeat),
        "SharedMemory copy in/out",
        2.0,
    )

    with create_executor({"name": "local", "max_workers": 2}) as executor:
        flowstage_case(executor, args.mb, "artifact", 1)
        ours = flowstage_case(executor, args.mb, "artifact", args.repeat)
    ok &= report(
        "local disk, artifact",
        ours,
        raw_pickle_file(args.mb, args.repeat, home),
        "pickle.dump/pickle.load",
        1.5,
    )

    if not args.skip_ray:
        with create_executor({"name": "ray", "num_cpus": 2}) as executor:
            flowstage_case(executor, args.mb, "cluster_memory", 1)
            ours = flowstage_case(executor, args.mb, "cluster_memory", args.repeat)
            raw = raw_ray(args.mb, args.repeat)
        ok &= report("ray, cluster_memory", ours, raw, "ray.put/ray.get", 2.0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
