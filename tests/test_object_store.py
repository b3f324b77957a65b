"""The object store and artifacts: put in one stage, get in a later one, on every executor;
across runs; fallback; bad input; S3 against a real moto server; crash safety; the CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowstage import (
    ObjectNotFound,
    StageError,
    create_executor,
    object_store,
    run_workflow,
)
from flowstage.artifacts import get_artifact, list_artifacts, new_artifact
from flowstage.core.errors import InvalidKeyError, ObjectStoreError

STRATEGIES = ["cluster_memory", "artifact", "fallback"]
SRC = str(Path(__file__).resolve().parents[1] / "src")


def wf(*stages: dict[str, Any], name: str = "objects") -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"stages": list(stages)}}


def stage(name: str, target: str, *depends: str, **more: Any) -> dict[str, Any]:
    return {
        "name": name,
        "target": f"teststages.objects.{target}",
        "depends_on": list(depends),
        **more,
    }


PUT_THEN_GET = wf(stage("put", "put_model"), stage("use", "use_model", "put"))


@pytest.fixture
def key() -> str:
    """A key no other test uses: cluster memory is shared by the whole session."""
    return f"test/{uuid.uuid4().hex[:10]}"


def write_settings(home: Path, settings: dict[str, Any]) -> None:
    (home / "settings.yaml").write_text(yaml.safe_dump(settings))


# between stages, on every executor ------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_put_in_one_stage_get_in_a_later_one(executor, key: str, strategy: str) -> None:
    result = run_workflow(PUT_THEN_GET, {"key": key, "strategy": strategy}, executor=executor)
    assert result["prediction"] == 6.0
    assert result["tier"] == ("artifact" if strategy == "artifact" else "cluster_memory")


def test_map_items_share_objects(executor, key: str) -> None:
    result = run_workflow(
        wf(
            {
                "name": "put",
                "target": "teststages.objects.item_put",
                "type": "parameterized",
                "map_on": "items",
            },
            stage("sum", "item_sum", "put"),
        ),
        {"items": list(range(20))},
        executor=executor,
        namespace=f"map-{uuid.uuid4().hex[:6]}",
    )
    assert result == sum(i * 10 for i in range(20))


def test_delete_removes_from_the_tiers_it_names(executor, key: str) -> None:
    result = run_workflow(
        wf(stage("put", "put_value"), stage("delete", "delete_value", "put")),
        {"key": key, "value": {"a": 1}},
        executor=executor,
    )
    assert result == [True, False, None]


def test_missing_key_names_key_and_namespace(executor, key: str) -> None:
    text = run_workflow(
        wf(stage("look", "missing")), {"key": key}, executor=executor, namespace="lookup-ns"
    )
    kind, is_key_error, message = text.split("|", 2)
    assert (kind, is_key_error) == ("ObjectNotFound", "True")
    assert f"no object {key!r} in namespace 'lookup-ns'" in message
    assert "stage 'look'" in message


@pytest.mark.parametrize("strategy", ["cluster_memory", "artifact"])
def test_unpicklable_object_names_key_and_stage(executor, key: str, strategy: str) -> None:
    with pytest.raises(StageError) as caught:
        run_workflow(
            wf(stage("keep_lock", "put_lock")),
            {"key": key, "strategy": strategy},
            executor=executor,
        )
    message = str(caught.value)
    assert caught.value.stage == "keep_lock"
    assert f"object_store.put({key!r}) in stage 'keep_lock'" in message
    assert "cannot be pickled" in message and "lock" in message
    assert (
        object_store.get(key, None, strategy=strategy if strategy == "artifact" else "artifact")
        is None
    )


def test_namespaces_isolate_objects(executor, key: str) -> None:
    put = wf(stage("put", "put_value"))
    look = wf(stage("look", "namespace_and_value"))
    run_workflow(put, {"key": key, "value": "in a"}, executor=executor, namespace="team-a")
    run_workflow(
        put,
        {"key": key, "value": "artifact in a", "strategy": "artifact"},
        executor=executor,
        namespace="team-c",
    )
    assert run_workflow(look, {"key": key}, executor=executor, namespace="team-b") == [
        "team-b",
        None,
    ]
    assert run_workflow(look, {"key": key}, executor=executor, namespace="team-a") == [
        "team-a",
        "in a",
    ]
    assert run_workflow(look, {"key": key}, executor=executor, namespace="team-c") == [
        "team-c",
        "artifact in a",
    ]
    assert [a.name for a in list_artifacts("team-c")] == [key]
    assert list_artifacts("team-b") == []
    assert object_store.get(key, None) is None  # the driver's namespace is "default"


def test_artifact_api_inside_stages(executor, key: str) -> None:
    result = run_workflow(
        wf(stage("write", "write_artifact"), stage("read", "read_artifact", "write")),
        {"name": key},
        executor=executor,
    )
    assert result == {
        "metadata": {"stage": "write", "rows": 3},
        "notes": "written in a stage",
        "files": ["notes.txt"],
    }
    assert get_artifact(key).read("notes.txt") == b"written in a stage"


def test_fallback_moves_big_objects_to_artifacts_and_drops_stale_copies(
    executor, key: str, app_home: Path
) -> None:
    write_settings(app_home, {"object_store": {"memory_size_limit": "10KB"}})
    result = run_workflow(
        wf(stage("roundtrip", "fallback_roundtrip")), {"key": key}, executor=executor
    )
    assert result == [
        ["cluster_memory", "artifact", "cluster_memory"],
        100000.0,
        "small again",
        False,
    ]
    report = object_store.report(executor=executor)
    assert key in [o["key"] for o in report["cluster_memory"]["objects"]]
    assert key not in [o["key"] for o in report["artifact"]["objects"]]


def test_report_and_clear_a_namespace(executor) -> None:
    namespace = f"report-{uuid.uuid4().hex[:6]}"
    run_workflow(
        wf(stage("put", "put_two")), {"prefix": "p"}, executor=executor, namespace=namespace
    )
    report = object_store.report(namespace, executor=executor, strategy="cluster_memory")[
        "cluster_memory"
    ]
    assert [o["key"] for o in report["objects"]] == ["p/a", "p/b"]
    assert report["count"] == 2 and report["bytes"] > 1000
    assert {o["type"] for o in report["objects"]} == {"list", "str"}
    assert object_store.clear(namespace, executor=executor) == 2
    assert object_store.report(namespace, executor=executor)["cluster_memory"]["count"] == 0
    assert object_store.get("p/a", None, namespace=namespace, executor=executor) is None


# across runs -------------------------------------------------------------------------------


def test_cluster_memory_outlives_runs_of_a_long_lived_executor(executor, key: str) -> None:
    run_workflow(
        wf(stage("put", "put_value")),
        {"key": key, "value": [1, 2, 3], "strategy": "cluster_memory"},
        executor=executor,
    )
    got = run_workflow(
        wf(stage("get", "get_root")), {"key": key, "strategy": "cluster_memory"}, executor=executor
    )
    assert got == [1, 2, 3]
    # the driver reaches the same memory through the executor
    assert list(object_store.get(key, strategy="cluster_memory", executor=executor)) == [1, 2, 3]
    assert object_store.delete(key, strategy="cluster_memory", executor=executor)
    assert object_store.get(key, "gone", strategy="cluster_memory", executor=executor) == "gone"


def test_ray_objects_outlive_the_worker_that_stored_them(executor, key: str) -> None:
    if executor.name != "ray":
        pytest.skip("Ray workers own what they put: the object store hands objects to an actor")
    stored = run_workflow(
        wf(stage("put", "put_model")), {"key": key, "strategy": "cluster_memory"}, executor=executor
    )
    time.sleep(0.5)  # the actor copies in the background, off the stage's path
    os.kill(stored["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(stored["pid"]):
        time.sleep(0.05)
    model = run_workflow(
        wf(stage("get", "get_root")), {"key": key, "strategy": "cluster_memory"}, executor=executor
    )
    assert model.predict(2.0) == 6.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
def test_cluster_memory_goes_with_an_executor_started_for_one_run(
    key: str, processes: bool
) -> None:
    spec = {"name": "local", "processes": processes, "max_workers": 1}
    run_workflow(
        wf(stage("put", "put_value")),
        {"key": key, "value": 1, "strategy": "cluster_memory"},
        executor=spec,
    )
    assert (
        run_workflow(
            wf(stage("get", "get_root")),
            {"key": key, "strategy": "cluster_memory", "default": None},
            executor=spec,
        )
        is None
    )
    with create_executor(spec) as ex:
        path = (ex.cluster_memory() or {}).get("path")
    assert path is None or not os.path.exists(path)  # processes: the files in RAM are gone


def test_artifacts_persist_across_runs_and_executors(executor, key: str) -> None:
    run_workflow(
        wf(stage("put", "put_model")), {"key": key, "strategy": "artifact"}, executor=executor
    )
    with create_executor({"name": "local", "max_workers": 1}) as other:
        got = run_workflow(
            wf(stage("get", "get_root")), {"key": key, "strategy": "artifact"}, executor=other
        )
    assert got.predict(2.0) == 6.0
    artifact = get_artifact(key)
    assert artifact.object_info["serializer"] == "cloudpickle"
    assert artifact.object_info["type"] == "teststages.objects.Model"
    assert object_store.get(key).weights == [1.0, 2.0]  # fallback finds artifacts too


# bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "../x",
        "a/../b",
        "/etc/passwd",
        "",
        "a//b",
        "./a",
        "C:/x",
        "s3://b/k",
        "a\\b",
        ".artifact.json",
        7,
    ],
)
def test_bad_keys_are_rejected_everywhere(bad: Any) -> None:
    for call in (
        lambda: object_store.put(bad, 1),
        lambda: object_store.get(bad),
        lambda: object_store.delete(bad),
        lambda: new_artifact(bad),
        lambda: get_artifact(bad),
    ):
        with pytest.raises(InvalidKeyError) as caught:
            call()
        assert repr(bad) in str(caught.value)
        assert isinstance(caught.value, ValueError)


def test_bad_key_in_a_stage(local_executor) -> None:
    message = run_workflow(
        wf(stage("bad", "bad_key")), {"key": "../../escape"}, executor=local_executor
    )
    assert message.startswith("invalid key '../../escape'")


def test_missing_key_outside_a_run_and_unknown_strategy(key: str) -> None:
    with pytest.raises(KeyError) as caught:
        object_store.get(key, namespace="elsewhere")
    assert isinstance(caught.value, ObjectNotFound)
    assert f"no object {key!r} in namespace 'elsewhere'" in str(caught.value)
    assert object_store.get(key, 42) == 42
    with pytest.raises(ObjectStoreError, match="unknown object store strategy 'disk'"):
        object_store.put(key, 1, strategy="disk")


def test_bad_namespace_is_rejected(key: str) -> None:
    with pytest.raises(InvalidKeyError, match="invalid namespace '../up'"):
        object_store.put(key, 1, namespace="../up")


# artifacts -------------------------------------------------------------------------------------


def test_artifact_files_and_metadata(key: str) -> None:
    artifact = new_artifact(key, metadata={"score": 0.9})
    with pytest.raises(FileExistsError, match=key):
        new_artifact(key)
    artifact.new_file("a.bin", b"\x00\x01")
    with pytest.raises(FileExistsError):
        artifact.new_file("a.bin")
    artifact.write("b.txt", "text")
    artifact["trained_on"] = "2024-05-01"
    artifact.update_meta(rows=3)
    again = get_artifact(key)
    assert again.metadata == {"score": 0.9, "trained_on": "2024-05-01", "rows": 3}
    assert [f.name for f in again.list_files()] == ["a.bin", "b.txt"]
    assert again.read("b.txt", "r") == "text" and again.get_file("a.bin").read() == b"\x00\x01"
    manifest = json.loads(Path(again.path, ".artifact.json").read_text())
    assert manifest["metadata"]["rows"] == 3
    with pytest.raises(FileNotFoundError, match="has no file 'c.txt'"):
        again.get_file("c.txt")
    with pytest.raises(ObjectStoreError, match="JSON"):
        again["bad"] = object()
    # a failed write leaves the old content
    with pytest.raises(RuntimeError), again.get_file("b.txt").open("w") as f:
        f.write("half")
        raise RuntimeError("crash in the middle")
    assert again.read("b.txt", "r") == "text"
    assert again.get_file("b.txt").remove() and not again.has_file("b.txt")
    again.remove()
    with pytest.raises(ObjectNotFound, match=f"no artifact {key!r} in namespace 'default'"):
        get_artifact(key)


def test_json_serializer_writes_plain_json(key: str) -> None:
    object_store.put(key, {"a": [1, 2]}, strategy="artifact", serializer="json")
    artifact = get_artifact(key)
    assert artifact.object_info["serializer"] == "json"
    value_file = Path(artifact.path, artifact.object_info["file"])
    assert json.loads(value_file.read_text()) == {"a": [1, 2]}
    assert object_store.get(key) == {"a": [1, 2]}
    with pytest.raises(ObjectStoreError, match="unknown serializer 'xml'"):
        object_store.put(key, 1, strategy="artifact", serializer="xml")


def test_parquet_and_arrow_serializers_keep_dataframes(key: str) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame({"city": ["Oslo", "Lima"], "temp": [3.5, 19.0]})
    for serializer in ("parquet", "arrow"):
        object_store.put(key, frame, strategy="artifact", serializer=serializer)
        pd.testing.assert_frame_equal(object_store.get(key), frame)


def test_outside_a_run_memory_is_this_process(key: str) -> None:
    assert object_store.put(key, {"x": 1}) == "cluster_memory"
    assert object_store.get(key) == {"x": 1}
    assert object_store.delete(key) and not object_store.exists(key)


# S3 through a real S3 protocol server ---------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_server() -> Any:
    pytest.importorskip("s3fs")
    server_module = pytest.importorskip("moto.server")
    port = _free_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    options = {
        "key": "testing",
        "secret": "testing",
        "endpoint_url": f"http://127.0.0.1:{port}",
        "client_kwargs": {"region_name": "us-west-2"},
    }
    import s3fs

    s3fs.S3FileSystem(**options).mkdir("flowstage-test")
    yield options
    server.stop()


@pytest.fixture
def s3_settings(s3_server: dict[str, Any], app_home: Path) -> dict[str, Any]:
    prefix = uuid.uuid4().hex[:8]
    write_settings(
        app_home, {"artifacts": {"url": f"s3://flowstage-test/{prefix}", "options": s3_server}}
    )
    return {"prefix": prefix, **s3_server}


def test_s3_artifacts_between_stages(executor, key: str, s3_settings: dict[str, Any]) -> None:
    result = run_workflow(PUT_THEN_GET, {"key": key, "strategy": "artifact"}, executor=executor)
    assert result["prediction"] == 6.0
    import s3fs

    fs = s3fs.S3FileSystem(**{k: v for k, v in s3_settings.items() if k != "prefix"})
    names = [
        p.rsplit("/", 1)[-1]
        for p in fs.find(f"flowstage-test/{s3_settings['prefix']}/default/{key}")
    ]
    assert ".artifact.json" in names and any(n.startswith(".value-") for n in names)


def test_s3_artifact_api_and_objects(key: str, s3_settings: dict[str, Any]) -> None:
    object_store.put(key, list(range(5)), strategy="artifact")
    assert object_store.get(key, strategy="artifact") == [0, 1, 2, 3, 4]
    artifact = new_artifact(f"{key}-files", metadata={"source": "s3"})
    artifact.write("data.csv", "a,b\n1,2\n")
    assert artifact.uri.startswith(f"s3://flowstage-test/{s3_settings['prefix']}/default/")
    assert get_artifact(f"{key}-files").read("data.csv", "r") == "a,b\n1,2\n"
    assert sorted(a.name for a in list_artifacts()) == [key, f"{key}-files"]
    report = object_store.report(strategy="artifact")["artifact"]
    assert [o["key"] for o in report["objects"]] == [key]
    assert object_store.delete(key, strategy="artifact")
    assert [a.name for a in list_artifacts()] == [f"{key}-files"]


def test_unreachable_s3_is_a_clear_error(key: str, app_home: Path) -> None:
    pytest.importorskip("s3fs")
    options = {
        "key": "testing",
        "secret": "testing",
        "endpoint_url": f"http://127.0.0.1:{_free_port()}",
        "client_kwargs": {"region_name": "us-west-2"},
        "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}},
    }
    write_settings(app_home, {"artifacts": {"url": "s3://nowhere/prefix", "options": options}})
    began = time.monotonic()
    with pytest.raises(ObjectStoreError) as caught:
        object_store.put(key, 1, strategy="artifact")
    message = str(caught.value)
    assert f"writing object {key!r} in namespace 'default' at s3://nowhere/prefix failed" in message
    assert "nothing was changed" in message and "connect" in message.lower()
    assert time.monotonic() - began < 30


# crash safety -----------------------------------------------------------------------------------


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from flowstage import object_store
    key, rounds = sys.argv[1], int(sys.argv[2])
    for i in range(rounds):
        object_store.put(key, np.full(4_000_000, i, dtype="int64"), strategy="artifact")
        print(i, flush=True)
""")


def _python(code: str, *args: str, home: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "FLOWSTAGE_HOME": str(home), "PYTHONPATH": SRC}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True, env=env
    )


def test_a_killed_writer_never_leaves_a_half_written_object(key: str, app_home: Path) -> None:
    pytest.importorskip("numpy")
    seen = 0
    for delay in (0.0, 0.03, 0.07, 0.12, 0.2):
        writer = _python(WRITER, key, "1000", home=app_home)
        assert writer.stdout is not None
        first = writer.stdout.readline()  # one object is complete
        assert first.strip().isdigit()
        time.sleep(delay)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        value = object_store.get(key, strategy="artifact")
        assert value.shape == (4_000_000,) and value.dtype.name == "int64"
        assert int(value.min()) == int(value.max())  # one whole version, never a mix or a prefix
        seen += 1
    assert seen == 5


FULL_DISK = textwrap.dedent("""
    import resource, signal, sys
    from flowstage import object_store
    from flowstage.core.errors import ObjectStoreError
    key = sys.argv[1]
    object_store.put(key, b"old" * 100, strategy="artifact")
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the limit, write() fails instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))
    try:
        object_store.put(key, b"new" * 1_000_000, strategy="artifact")
    except ObjectStoreError as exc:
        print("error:", exc)
""")


def test_a_failed_write_changes_nothing(key: str, app_home: Path) -> None:
    proc = _python(FULL_DISK, key, home=app_home)
    out, _ = proc.communicate(timeout=60)
    assert f"error: writing object {key!r} in namespace 'default'" in out
    assert "File too large" in out and "nothing was changed" in out
    assert object_store.get(key, strategy="artifact") == b"old" * 100
    folder = app_home / "artifacts" / "default" / key
    assert sorted(p.name.split("-")[0] for p in folder.iterdir()) == [".artifact.json", ".value"]


# CLI ----------------------------------------------------------------------------------------------


def test_objects_cli_ls_get_rm(key: str, capsys: pytest.CaptureFixture[str]) -> None:
    from flowstage.cli.main import run_cli

    object_store.put(key, {"rows": 3}, strategy="artifact", namespace="cli-ns")
    new_artifact("plain", namespace="cli-ns").write("hello.txt", "hi")
    assert run_cli(["objects", "ls", "--namespace", "cli-ns", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["object"], r["files"]) for r in rows] == [
        ("plain", "", 1),
        (key, "dict", 0),
    ]
    assert run_cli(["objects", "get", key, "-n", "cli-ns", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"rows": 3}
    assert run_cli(["objects", "get", "plain", "-n", "cli-ns", "--file", "hello.txt"]) == 0
    assert capsys.readouterr().out == "hi"
    assert run_cli(["objects", "ls"]) == 0
    assert "no artifacts in namespace 'default'" in capsys.readouterr().err
    assert run_cli(["objects", "rm", key, "-n", "cli-ns"]) == 0
    assert f"removed {key!r}" in capsys.readouterr().out
    assert run_cli(["objects", "get", key, "-n", "cli-ns"]) == 2
    assert f"no artifact {key!r} in namespace 'cli-ns'" in capsys.readouterr().err
    assert run_cli(["objects", "rm", "../x"]) == 2
    assert "invalid artifact name '../x'" in capsys.readouterr().err


def test_import_flowstage_stays_light() -> None:
    code = (
        "import sys, flowstage; flowstage.object_store; "
        "print(sorted(m for m in ('fsspec', 'cloudpickle', 'dask', 'ray') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
