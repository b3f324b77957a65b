"""What only the Dask and Ray executors do: options, connecting, resources, external
clusters, cancellation that really stops work, and clean-up of engine processes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import _engine, interruptible
from flowstage import (
    StageError,
    WorkflowError,
    arun_workflow,
    create_executor,
    run_workflow,
)
from flowstage.core.errors import ExecutorError

B = "teststages.basic."
E = "teststages.engines."
BIN = Path(sys.executable).parent
REMOTE = ["dask", "ray"]
MODULES = {"dask": "distributed", "ray": "ray"}


def needs(*engines: str) -> None:
    """Skip unless the engines' extras are installed."""
    for engine in engines:
        pytest.importorskip(MODULES[engine], reason=f"pip install 'flowstage[{engine}]'")


@pytest.fixture(params=REMOTE)
def remote(request: pytest.FixtureRequest):
    """The session's started Dask or Ray executor."""
    return _engine(request.param)


def workflow(name: str, *stages: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "workflow", "metadata": {"name": name}, "spec": {"stages": list(stages)}}


def stage(name: str, target: str, *depends_on: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "target": target,
        **({"depends_on": list(depends_on)} if depends_on else {}),
        **extra,
    }


def param(name: str, target: str, *depends_on: str, **extra: Any) -> dict[str, Any]:
    return stage(name, target, *depends_on, type="parameterized", **extra)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def marked_processes(marker: str) -> list[int]:
    """Processes whose environment carries ``marker`` (engine processes of one test)."""
    found = []
    needle = marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def wait_until_gone(marker: str, seconds: float = 20) -> list[int]:
    deadline = time.monotonic() + seconds
    while True:
        left = marked_processes(marker)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def json_in(text: str) -> Any:
    """The JSON document printed at the start of a line of ``text`` (worker output may surround
    it)."""
    start = text.index("\n{") + 1 if not text.startswith("{") else 0
    return json.JSONDecoder().raw_decode(text, start)[0]


def write_workflow(folder: Path, name: str, stages: list[dict[str, Any]]) -> Path:
    import yaml

    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(workflow(name, *stages)))
    return path


# --- options ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "typo", "valid"), [("dask", "n_worker", "n_workers"), ("ray", "num_cpu", "num_cpus")]
)
def test_unknown_option_lists_valid_ones(name: str, typo: str, valid: str):
    with pytest.raises(ExecutorError) as info:
        create_executor({"name": name, typo: 2})
    message = str(info.value)
    assert f"unknown option {typo!r}" in message
    assert valid in message and "address" in message and "connect_timeout" in message


@pytest.mark.parametrize(("name", "option"), [("dask", "n_workers"), ("ray", "num_cpus")])
def test_local_cluster_options_do_not_mix_with_address(name: str, option: str):
    with pytest.raises(ExecutorError, match=option):
        create_executor({"name": name, "address": "127.0.0.1:1", option: 2})


def test_executors_command_lists_engines_and_options():
    needs("dask", "ray")
    from typer.testing import CliRunner

    from flowstage.cli.app import build_app

    result = CliRunner().invoke(build_app(), ["executors", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["dask"]["installed"] == "yes" and rows["ray"]["installed"] == "yes"
    assert {
        "address",
        "n_workers",
        "threads_per_worker",
        "resources",
        "env",
        "connect_timeout",
    } <= set(rows["dask"]["options"])
    assert {"address", "num_cpus", "num_gpus", "resources", "env", "connect_timeout"} <= set(
        rows["ray"]["options"]
    )


def test_plugins_do_not_import_the_engines():
    code = (
        "import sys, flowstage.executors.dask.executor, flowstage.executors.ray.executor; "
        "print(sorted(m for m in ('dask', 'distributed', 'ray') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- connecting --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "address"),
    [
        ("dask", "tcp://127.0.0.1:{port}"),
        ("ray", "127.0.0.1:{port}"),
        ("ray", "ray://127.0.0.1:{port}"),
    ],
)
def test_unreachable_address_fails_fast_naming_it(name: str, address: str):
    needs(name)
    address = address.format(port=free_port())
    wf = workflow("nowhere", stage("one", B + "one"))
    began = time.monotonic()
    with pytest.raises(ExecutorError) as info:
        run_workflow(wf, executor={"name": name, "address": address, "connect_timeout": "2s"})
    assert time.monotonic() - began < 8
    assert address in str(info.value)


@pytest.mark.parametrize(("name", "scheme"), [("dask", "tcp://"), ("ray", ""), ("ray", "ray://")])
def test_connect_timeout_bounds_a_silent_address(name: str, scheme: str):
    """A listener that accepts connections but never answers: we give up after
    connect_timeout (Ray alone would retry for about 20 s)."""
    needs(name)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"{scheme}127.0.0.1:{silent.getsockname()[1]}"
        began = time.monotonic()
        with pytest.raises(ExecutorError, match="127.0.0.1") as info:
            create_executor({"name": name, "address": address, "connect_timeout": "1s"}).start()
        assert time.monotonic() - began < 8
        assert "connect_timeout" in str(info.value)


# --- resources ---------------------------------------------------------------------------


def test_stage_needing_a_missing_gpu_fails_before_the_run(remote, tmp_path: Path):
    marker = tmp_path / "ran"
    wf = workflow(
        "gpu", stage("first", B + "mark"), stage("train", B + "one", resources={"gpus": 1})
    )
    with pytest.raises(WorkflowError) as info:
        run_workflow(wf, {"marker": str(marker)}, executor=remote)
    message = str(info.value)
    assert "'train'" in message and "gpus=1" in message
    assert ("workers offer" if remote.name == "dask" else "nodes offer") in message
    assert not marker.exists(), "a stage ran although the workflow could never finish"


def test_ordinary_cpu_and_memory_requests_run_unchanged(remote):
    wf = workflow(
        "sized",
        stage("numbers", B + "numbers", resources={"cpus": 1, "memory": "100MB"}),
        param("doubled", B + "double", "numbers", resources={"cpus": 1}),
    )
    assert run_workflow(wf, {"n_vals": 3}, executor=remote) == [0, 2, 4]


def test_request_above_every_worker_names_what_exists(remote):
    wf = workflow("huge", stage("big", B + "one", resources={"cpus": 64, "memory": "10TB"}))
    with pytest.raises(WorkflowError) as info:
        run_workflow(wf, executor=remote)
    assert "'big'" in str(info.value) and "cpus=64" in str(info.value)
    assert "memory=" in str(info.value)


# --- results and failures ------------------------------------------------------------------


def test_unserializable_result_names_the_stage(remote):
    """The result must reach the driver, and cannot: the stage fails, named."""
    with pytest.raises(StageError) as info:
        run_workflow(workflow("lock", stage("locker", E + "make_lock")), executor=remote)
    assert info.value.stage == "locker"
    assert "cannot be serialized" in str(info.value) and "lock" in str(info.value)


def test_ray_blames_an_unserializable_result_on_its_stage():
    """Ray stores every result serialized: the stage that returned it fails, although
    the stages after it, submitted ahead, fail as well (the last one is the one the run
    waits for)."""
    needs("ray")
    wf = workflow(
        "lock",
        stage("locker", E + "make_lock"),
        stage("reader", E + "type_name", "locker"),
        stage("last", E + "type_name", "reader"),
    )
    run = run_workflow(wf, executor=_engine("ray"), return_run=True)
    assert run.state == "failed"
    assert isinstance(run.exception, StageError) and run.exception.stage == "locker"
    assert "cannot be serialized" in str(run.exception) and "_thread.lock" in str(run.exception)
    assert run.stages["locker"].state == "failed"
    assert {run.stages[name].state for name in ("reader", "last")} == {"cancelled"}


def test_a_stage_raising_a_base_exception_fails_as_itself(remote):
    """Not taken for a result that could not be serialized (Ray stores both alike)."""
    with pytest.raises(StageError) as info:
        run_workflow(workflow("halting", stage("halter", E + "halt")), executor=remote)
    assert info.value.stage == "halter"
    assert "Halt" in str(info.value) and "halted on purpose" in str(info.value)
    assert "serialized" not in str(info.value)


def test_dask_serializes_a_result_only_to_move_it():
    """As with Dask alone, a result that stays on its worker is never serialized: an
    unserializable one is fine there."""
    needs("dask")
    wf = workflow(
        "lock", stage("locker", E + "make_lock"), stage("reader", E + "type_name", "locker")
    )
    assert run_workflow(wf, executor=_engine("dask"), record=False) in ("lock", "Lock")


def test_ray_serializes_a_result_once(tmp_path: Path):
    """A single call's result is pickled by Ray when it stores it, and not once more
    beforehand to check that it can be (which doubled the cost of large results)."""
    needs("ray")
    log = tmp_path / "pickled.log"
    wf = workflow("once", stage("make", E + "counts_pickling"))
    result = run_workflow(
        wf, {"path": str(log)}, executor=_engine("ray"), record=False
    )  # (a record pickles it)
    assert type(result).__name__ == "CountsPickling"
    assert log.read_text().splitlines() == ["pickled"]


def test_unserializable_map_item_names_the_item(remote):
    wf = workflow("lock_items", param("items", E + "lock_on_one", map_on="values"))
    with pytest.raises(StageError) as info:
        run_workflow(wf, {"values": [0, 1, 2]}, executor=remote)
    assert info.value.stage == "items"
    assert info.value.item_index == 1


def test_ray_object_references_travel_between_stages():
    """A stage may return Ray object references: they reach the next stage intact
    (such calls go through Ray's own serializer, which tracks the references)."""
    needs("ray")
    wf = workflow(
        "refs",
        stage("put", E + "put_in_ray"),
        stage("get", E + "get_from_ray", "put"),
        param("each", E + "get_one", "put"),
    )
    assert run_workflow(wf, {"n": 4}, executor=_engine("ray")) == {"get": 41, "each": [41]}


def test_killed_worker_gets_the_item_retried(remote, tmp_path: Path):
    """Item 1 kills its worker process once: the engine reruns it; no hang, no loss."""
    wf = workflow("killed", param("items", E + "die_once", map_on="values"))
    began = time.monotonic()
    result = run_workflow(
        wf, {"marker_dir": str(tmp_path / "marks"), "values": [0, 1, 2, 3]}, executor=remote
    )
    assert result == [0, 10, 20, 30]
    assert (tmp_path / "marks" / "died").exists()
    assert time.monotonic() - began < 60


def test_timeout_really_stops_the_task(remote):
    """Soon after a timed-out call its worker is free again: the sleeping task was
    stopped (its worker killed and replaced), not left running for a minute."""
    slow = workflow("stuck", stage("sleepy", E + "sleep_long", timeout="200ms"))
    if remote.name == "ray":
        # Ray counts busy CPUs: they must come back to what was free before the call.
        import ray

        time.sleep(2)
        free_before = ray.available_resources().get("CPU", 0)
        with pytest.raises(StageError):
            run_workflow(slow, {"seconds": 60}, executor=remote)
        deadline = time.monotonic() + 30
        while ray.available_resources().get("CPU", 0) < free_before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ray.available_resources().get("CPU", 0) >= free_before, (
            "the timed-out task still holds its CPU"
        )
        return
    with pytest.raises(StageError):
        run_workflow(slow, {"seconds": 60}, executor=remote)
    time.sleep(5)
    overlap = workflow(
        "after",
        stage("a", E + "stamp"),
        stage("b", E + "stamp"),
        stage("both", E + "spans", "a", "b"),
    )
    began = time.monotonic()
    (a_start, a_end), (b_start, b_end) = run_workflow(overlap, {"seconds": 0.5}, executor=remote)
    assert time.monotonic() - began < 30
    assert a_start < b_end and b_start < a_end, "one worker was still busy with the timed-out task"


# --- one executor, many runs ----------------------------------------------------------------


def test_one_executor_serves_many_runs(remote):
    chain = workflow(
        "many",
        stage("numbers", B + "numbers"),
        param("doubled", B + "double", "numbers"),
        stage("total", B + "total", "doubled"),
    )
    for n in (3, 4, 5):
        assert run_workflow(chain, {"n_vals": n}, executor=remote) == 2 * sum(range(n))
    assert remote.started

    async def together() -> list[Any]:
        return await asyncio.gather(
            *(arun_workflow(chain, {"n_vals": n}, executor=remote) for n in (10, 20, 30))
        )

    assert asyncio.run(together()) == [90, 380, 870]
    assert remote.started


# --- external clusters ----------------------------------------------------------------------


def _stop(process: subprocess.Popen[Any], sig: int = signal.SIGTERM, wait: float = 20) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[str]:
    """A real ``dask scheduler`` and one ``dask worker`` (resource special=2) on 127.0.0.1."""
    needs("dask")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = (tmp_path / "scheduler.log").open("w"), (tmp_path / "worker.log").open("w")
    scheduler = subprocess.Popen(
        [
            str(BIN / "dask"),
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-dashboard",
        ],
        stdout=logs[0],
        stderr=subprocess.STDOUT,
    )
    worker = subprocess.Popen(
        [
            str(BIN / "dask"),
            "worker",
            address,
            "--host",
            "127.0.0.1",
            "--nthreads",
            "1",
            "--nworkers",
            "1",
            "--no-dashboard",
            "--resources",
            "special=2",
        ],
        stdout=logs[1],
        stderr=subprocess.STDOUT,
    )
    try:
        yield address
    finally:
        _stop(worker)
        _stop(scheduler)
        for log in logs:
            log.close()


def test_external_dask_cluster(
    dask_cluster: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    wf = workflow(
        "external",
        stage("numbers", B + "numbers", resources={"special": 1}),
        param("doubled", B + "double", "numbers"),
        stage("env", E + "read_env"),
        stage("said", E + "shout"),
    )
    spec = {
        "name": "dask",
        "address": dask_cluster,
        "env": {"FLOWSTAGE_TEST_VALUE": "from-option"},
        "connect_timeout": "20s",
    }
    with create_executor(spec) as ex:
        assert ex.parallelism == 1
        result = run_workflow(
            wf,
            {"n_vals": 4, "name": "FLOWSTAGE_TEST_VALUE", "word": "hello-from-dask"},
            executor=ex,
        )
        assert result == {"doubled": [0, 2, 4, 6], "env": "from-option", "said": "hello-from-dask"}
        printed = capsys.readouterr().out
        deadline = time.monotonic() + 10  # the line travels apart from the result
        while "(said) stage says hello-from-dask" not in printed and time.monotonic() < deadline:
            time.sleep(0.1)
            printed += capsys.readouterr().out
        assert "(said) stage says hello-from-dask" in printed, (
            "the stage's print did not reach the driver"
        )
        again = run_workflow(
            wf, {"n_vals": 2, "name": "FLOWSTAGE_TEST_VALUE", "word": "again"}, executor=ex
        )
        assert again["doubled"] == [0, 2]
        too_much = workflow("too_much", stage("big", B + "one", resources={"special": 3}))
        with pytest.raises(WorkflowError, match=r"'big'.*special=3.*special=2"):
            run_workflow(too_much, executor=ex)
    # closing the executor leaves the external cluster running
    assert (
        run_workflow(
            workflow("still_up", stage("one", B + "one")),
            executor={"name": "dask", "address": dask_cluster},
        )
        == 1
    )


def stage_code_project(root: Path, home: Path, version: int) -> Path:
    """A workflow file next to its own module, plus a ``user_modules`` module: code a
    worker on another host would not have. Returns the workflow file."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "shipped_helpers.py").write_text(
        textwrap.dedent(f"""\
        import dataclasses


        @dataclasses.dataclass
        class Point:
            x: int


        def where():
            return __file__


        def version():
            return {version}


        def points():
            return [Point(1), Point(2)]


        def x_of(point):
            return point.x
        """)
    )
    (home / "user_modules").mkdir(parents=True, exist_ok=True)
    (home / "user_modules" / "shipped_shared.py").write_text("def where():\n    return __file__\n")
    path = root / "shipped.yaml"
    path.write_text(
        textwrap.dedent("""\
        kind: workflow
        metadata: {name: shipped}
        spec:
          stages:
            - {name: local, target: shipped_helpers.where}
            - {name: user, target: user_modules.shipped_shared.where}
            - {name: version, target: shipped_helpers.version}
            - {name: points, target: shipped_helpers.points}
            - {name: xs, target: shipped_helpers.x_of, type: parameterized, depends_on: [points]}
        """)
    )
    return path


@pytest.mark.parametrize("name", REMOTE)
def test_code_is_uploaded_only_to_clusters_at_an_address(name: str):
    assert create_executor({"name": name, "address": "127.0.0.1:1"}).uploads_code
    assert not create_executor(
        {"name": name, "address": "127.0.0.1:1", "upload_code": False}
    ).uploads_code
    assert not create_executor({"name": name}).uploads_code


def test_external_dask_cluster_gets_the_stage_code(
    dask_cluster: str, app_home: Path, tmp_path: Path
):
    """Workers import the workflow folder's and user_modules' code from the copy sent
    with the run, and a changed module is what the next run uses (the worker lives on)."""
    path = stage_code_project(tmp_path / "flow", app_home, version=1)
    with create_executor({"name": "dask", "address": dask_cluster, "connect_timeout": "20s"}) as ex:
        first = run_workflow(str(path), executor=ex)
        assert "flowstage-code" in first["local"] and "flowstage-code" in first["user"], first
        assert first["version"] == 1
        assert first["xs"] == [1, 2]  # items of a class from the sent code unpickle on the worker
        stage_code_project(tmp_path / "flow", app_home, version=2)
        assert run_workflow(str(path), executor=ex)["version"] == 2


#: stage code sent with a run, for stages pinned to different workers or nodes
PINNED_POINTS = textwrap.dedent("""\
    import dataclasses
    import threading


    @dataclasses.dataclass
    class Point:
        x: int


    def points():
        return [Point(1), Point(2)]


    def xs(points):
        return [point.x for point in points]


    def lock():
        return threading.Lock()


    def name_of(value):
        return type(value).__name__
    """)


def test_values_that_cross_dask_workers(
    app_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Two workers, a stage pinned to each, the second taking the first's output:

    - instances of a class from the sent code arrive before the second worker ran any
      task of the run (it hung, unable to unpickle them);
    - a value that cannot be serialized, or not unpickled on the second worker (its
      module is only on the first), fails the stage that returned it, at once (with
      Dask alone the dependent hangs), and the dependent's retries do not retry it.
    """
    needs("dask")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    only_first = tmp_path / "only_first"
    only_first.mkdir()
    (only_first / "only_here.py").write_text(
        "class Thing:\n    pass\n\n\ndef make():\n    return Thing()\n"
    )
    monkeypatch.syspath_prepend(str(only_first))  # the driver checks that targets import
    log = (tmp_path / "cluster.log").open("w")
    processes = [
        subprocess.Popen(
            [
                str(BIN / "dask"),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-dashboard",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd="/",
        )
    ]
    for label, env in (("first=1", {"PYTHONPATH": str(only_first)}), ("second=1", {})):
        processes.append(
            subprocess.Popen(
                [
                    str(BIN / "dask"),
                    "worker",
                    address,
                    "--host",
                    "127.0.0.1",
                    "--nthreads",
                    "1",
                    "--no-dashboard",
                    "--resources",
                    label,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd="/",
                env={**os.environ, **env},
            )
        )
    flow = tmp_path / "flow"
    flow.mkdir()
    (flow / "pinned_points.py").write_text(PINNED_POINTS)

    def pinned(name: str, first: str, second: str) -> Path:
        path = flow / f"{name}.yaml"
        path.write_text(
            yaml.safe_dump(
                workflow(
                    name,
                    stage("made", first, resources={"first": 1}),
                    stage(
                        "taken",
                        second,
                        "made",
                        resources={"second": 1},
                        timeout=60,
                        retries=2,
                        retry_delay="2s",
                    ),
                )
            )
        )
        return path

    try:
        import distributed

        with distributed.Client(address, timeout=20, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=20)
        with create_executor({"name": "dask", "address": address}) as ex:
            assert run_workflow(
                str(pinned("points", "pinned_points.points", "pinned_points.xs")), executor=ex
            ) == [1, 2]
            for name, target, problem in [
                ("locked", "pinned_points.lock", "cannot be serialized"),
                ("elsewhere", "only_here.make", "No module named 'only_here'"),
            ]:
                began = time.monotonic()
                run = run_workflow(
                    str(pinned(name, target, "pinned_points.name_of")), executor=ex, return_run=True
                )
                assert run.state == "failed" and run.exception.stage == "made", run.error
                assert (
                    problem in run.error and "attempts" not in run.error
                )  # not retried as "taken"'s failure
                assert time.monotonic() - began < 30  # not the stage's timeout
    finally:
        for process in processes[::-1]:
            _stop(process)
        log.close()


def test_a_worker_that_does_not_answer_delays_a_run_only_so_long(
    dask_cluster: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
):
    """Putting the stage code on the workers ahead of a run waits at most INSTALL_SECONDS
    for them (Distributed itself would wait for a blocked worker as long as it blocks)."""
    import flowstage.executors.dask.executor as dask_executor
    from flowstage.core.sources import pack_sources

    monkeypatch.setattr(dask_executor, "INSTALL_SECONDS", 1.0)
    flow = tmp_path / "flow"
    flow.mkdir()
    (flow / "module.py").write_text("def one():\n    return 1\n")
    bundle = pack_sources(str(flow), str(tmp_path / "home"))

    def block_event_loop(seconds: float) -> None:
        import time

        from distributed import get_worker

        loop = get_worker().loop  # blocked once this task has reported back
        loop.add_callback(loop.call_later, 0.5, time.sleep, seconds)

    with create_executor({"name": "dask", "address": dask_cluster, "connect_timeout": "20s"}) as ex:
        ex._client.wait_for_workers(1, timeout=20)
        ex._client.submit(block_event_loop, 6, pure=False).result(timeout=20)
        time.sleep(1)
        began = time.monotonic()
        with caplog.at_level("WARNING", logger="flowstage.executors.dask.executor"):
            ex.install_code(bundle)
        assert time.monotonic() - began < 4.5
        assert "not every worker answered within 1s" in caplog.text


def _run_driver(
    code: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def test_external_ray_cluster(tmp_path: Path):
    """``ray start --head`` on a free port, and a second node; a separate driver process
    connects with ``address:`` (a process holds one Ray connection, and this one has the
    session's). Instances of a class from the sent code cross to the second node before
    it ran a task of the run (Ray unpickles them after the call, which brings the code)."""
    needs("ray")
    port = free_port()
    tag = uuid.uuid4().hex
    # Ray enables token authentication for clusters it starts; head and driver share one.
    env = {
        **os.environ,
        "FLOWSTAGE_HOME": str(tmp_path / "home"),
        "FLOWSTAGE_LEAK_TAG": tag,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": uuid.uuid4().hex * 2,
    }
    head = subprocess.Popen(
        [
            str(BIN / "ray"),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=1",
            '--resources={"special": 2}',
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        stdout=(tmp_path / "ray.log").open("w"),
        stderr=subprocess.STDOUT,
        env=env,
        cwd="/",
    )
    node = subprocess.Popen(
        [
            str(BIN / "ray"),
            "start",
            "--block",
            f"--address=127.0.0.1:{port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=1",
            '--resources={"second": 1}',
            "--disable-usage-stats",
        ],
        stdout=(tmp_path / "node.log").open("w"),
        stderr=subprocess.STDOUT,
        env=env,
        cwd="/",
    )
    for name in (
        "pinned",
        "pinned_large",
    ):  # modules of their own: the second run cannot use the first's
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}_points.py").write_text(PINNED_POINTS)
        (tmp_path / name / "pinned.yaml").write_text(
            yaml.safe_dump(
                workflow(
                    name,
                    stage("points", f"{name}_points.points", resources={"special": 1}),
                    stage("xs", f"{name}_points.xs", "points", resources={"second": 1}, timeout=60),
                )
            )
        )
    # Code that compresses to over 100 KB: the run context goes through Ray's object store.
    (tmp_path / "pinned_large" / "ballast.py").write_text(
        f"DATA = {base64.b64encode(os.urandom(150_000))!r}\n"
    )
    try:
        # the code runs in a subprocess: keep it as written
        # fmt: off
        code = f"""
            import json
            from flowstage import run_workflow, WorkflowError
            wf = {workflow("ext_ray", stage("numbers", B + "numbers", resources={"special": 1}),
                           param("doubled", B + "double", "numbers"), stage("env", E + "read_env"),
                           stage("said", E + "shout"))!r}
            spec = {{"name": "ray", "address": "127.0.0.1:{port}", "connect_timeout": "60s",
                     "env": {{"FLOWSTAGE_TEST_VALUE": "from-option"}}}}
            out = run_workflow(wf, {{"n_vals": 3, "name": "FLOWSTAGE_TEST_VALUE", "word": "hello-from-ray"}},
                               executor=spec)
            shipped = run_workflow({str(stage_code_project(tmp_path / "flow", tmp_path / "home", 1))!r},
                                   executor={{"name": "ray", "address": "127.0.0.1:{port}"}})
            out["shipped"] = [shipped["local"], shipped["user"]]
            out["xs"] = shipped["xs"]
            import ray, time
            from flowstage import create_executor
            with create_executor({{"name": "ray", "address": "127.0.0.1:{port}"}}) as ex:
                ex.start()
                deadline = time.monotonic() + 60
                while sum(n["Alive"] for n in ray.nodes()) < 2 and time.monotonic() < deadline:
                    time.sleep(0.5)
                out["pinned"] = run_workflow({str(tmp_path / "pinned" / "pinned.yaml")!r}, executor=ex)
                out["pinned_large"] = run_workflow({str(tmp_path / "pinned_large" / "pinned.yaml")!r}, executor=ex)
            try:
                run_workflow({workflow("too_much", stage("big", B + "one", resources={"special": 3}))!r},
                             executor={{"name": "ray", "address": "127.0.0.1:{port}"}})
                out["too_much"] = "ran"
            except WorkflowError as exc:
                out["too_much"] = str(exc)
            print("RESULT " + json.dumps(out), flush=True)
        """
        # fmt: on
        done = _run_driver(code, env)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        assert lines, done.stdout + done.stderr
        out = json.loads(lines[0][7:])
        assert (
            out["doubled"] == [0, 2, 4]
            and out["env"] == "from-option"
            and out["said"] == "hello-from-ray"
        )
        assert (
            "'big'" in out["too_much"]
            and "special=3" in out["too_much"]
            and "special=2" in out["too_much"]
        )
        assert "hello-from-ray" in done.stdout + done.stderr, (
            "the stage's print did not reach the driver"
        )
        assert all("flowstage-code" in where for where in out["shipped"]), out["shipped"]
        assert out["xs"] == [1, 2]  # items of a class from the sent code unpickle on the workers
        assert (
            out["pinned"] == out["pinned_large"] == [1, 2]
        )  # ... and instances of it cross to another node
    finally:
        _stop(node, signal.SIGTERM, wait=40)
        _stop(head, signal.SIGTERM, wait=40)
        for pid in wait_until_gone(tag, 10):  # whatever `ray start` failed to stop
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


# --- the CLI leaves nothing behind ----------------------------------------------------------


@pytest.mark.parametrize("engine", REMOTE)
def test_cli_run_leaves_no_engine_processes(engine: str, tmp_path: Path):
    """`flowstage run --executor dask|ray` starts its own engine (with the ``env`` option
    reaching its workers) and stops all of it, after a successful run and after a failed
    one; stage output reaches the terminal."""
    needs(engine)
    tag = uuid.uuid4().hex
    env = {
        **os.environ,
        "FLOWSTAGE_HOME": str(tmp_path / "home"),
        "FLOWSTAGE_LEAK_TAG": tag,
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    good = write_workflow(
        tmp_path,
        "cli",
        [
            stage("said", E + "shout"),
            param("doubled", B + "double", map_on="values"),
            stage("env", E + "read_env"),
        ],
    )
    done = subprocess.run(
        [
            str(BIN / "flowstage"),
            "run",
            str(good),
            "--word",
            "hello-from-stage",
            "--values[]",
            "1",
            "--values[]",
            "2",
            "--name",
            "FLOWSTAGE_TEST_VALUE",
            "--executor",
            engine,
            "--executor-option",
            "env.FLOWSTAGE_TEST_VALUE=from-cli",
            "--format",
            "json",
            "--quiet",
        ],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json_in(done.stdout) == {
        "said": "hello-from-stage",
        "doubled": [2, 4],
        "env": "from-cli",
    }
    assert "stage says hello-from-stage" in done.stdout + done.stderr
    assert wait_until_gone(tag) == [], f"{engine} processes outlived `flowstage run`"

    bad = write_workflow(
        tmp_path, "cli_fails", [stage("one", B + "one"), stage("broken", B + "fails", "one")]
    )
    failed = subprocess.run(
        [str(BIN / "flowstage"), "run", str(bad), "--executor", engine, "--quiet"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "this stage always fails" in failed.stderr
    assert wait_until_gone(tag) == [], f"{engine} processes outlived a failed `flowstage run`"


@pytest.mark.parametrize("engine", REMOTE)
def test_missing_extra_says_which_to_install(engine: str):
    """With the engine not importable, choosing the executor names the extra to install."""
    code = textwrap.dedent(f"""
        import sys
        sys.modules[{MODULES[engine]!r}] = None  # as if the extra were not installed
        from flowstage import create_executor
        from flowstage.core.errors import ExecutorError
        try:
            create_executor({engine!r}).start()
        except ExecutorError as exc:
            print(exc)
    """)
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
    )
    assert f"pip install 'flowstage[{engine}]'" in out.stdout, out.stdout + out.stderr


@pytest.mark.parametrize("engine", REMOTE)
def test_ctrl_c_stops_the_run_and_its_engine(engine: str, tmp_path: Path):
    needs(engine)
    tag = uuid.uuid4().hex
    env = {
        **os.environ,
        "FLOWSTAGE_HOME": str(tmp_path / "home"),
        "FLOWSTAGE_LEAK_TAG": tag,
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    marker = tmp_path / "started"
    path = write_workflow(tmp_path, "slow", [stage("sleepy", E + "mark_then_sleep")])
    process = subprocess.Popen(
        interruptible(
            [
                str(BIN / "flowstage"),
                "run",
                str(path),
                "--marker",
                str(marker),
                "--seconds",
                "120",
                "--executor",
                engine,
                "--quiet",
            ]
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 90
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), (
            process.stderr.read() if process.poll() is not None else "the stage never started"
        )
        process.send_signal(signal.SIGINT)
        process.wait(60)
    finally:
        _stop(process, signal.SIGKILL)
    assert process.returncode != 0
    assert wait_until_gone(tag, 30) == [], (
        f"{engine} processes outlived an interrupted `flowstage run`"
    )
