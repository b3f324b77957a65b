"""The store under hostile input and concurrent writers: manifests that point outside the
store, file permissions in the app directory, and one artifact written from many threads
and processes at once."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cli_process import cli
from flowstage import object_store, run_workflow
from flowstage.artifacts import get_artifact, new_artifact, remove_artifact
from flowstage.core.errors import ObjectStoreError
from flowstage.state.store import get_store

# manifests ---------------------------------------------------------------------------


def tamper(key: str, field: object) -> Path:
    """Point artifact ``key``'s object at ``field``; a victim file outside the store."""
    object_store.put(key, {"v": 1}, strategy="artifact")
    artifact = get_artifact(key)
    manifest_path = Path(artifact.path, ".artifact.json")
    manifest = json.loads(manifest_path.read_text())
    manifest["object"]["file"] = field
    manifest_path.write_text(json.dumps(manifest))
    return manifest_path


@pytest.mark.parametrize(
    "field",
    ["../../../victim", "ABSOLUTE", "sub/.value-x.pkl", "..", ".artifact.json", 7, None],
)
def test_a_manifest_cannot_name_a_file_outside_its_artifact(app_home: Path, field: object) -> None:
    victim = app_home / "victim"  # <home>/artifacts/default/model/../../../victim
    victim.write_bytes(b"precious")
    tamper("model", str(victim) if field == "ABSOLUTE" else field)
    with pytest.raises(ObjectStoreError) as get_error:
        object_store.get("model", strategy="artifact")
    message = str(get_error.value)
    assert "artifact 'model' in namespace 'default'" in message
    assert "'object.file'" in message and "nothing was read or removed" in message
    with pytest.raises(ObjectStoreError, match="'object.file'"):
        object_store.put("model", {"v": 2}, strategy="artifact")
    with pytest.raises(ObjectStoreError, match="'object.file'"):
        object_store.delete("model", strategy="artifact")
    assert victim.read_bytes() == b"precious"
    assert remove_artifact("model")  # the way out the message names works
    assert victim.read_bytes() == b"precious"


def test_a_manifest_whose_object_is_not_a_mapping_is_refused() -> None:
    new_artifact("odd")
    manifest_path = Path(get_artifact("odd").path, ".artifact.json")
    manifest = json.loads(manifest_path.read_text())
    manifest["object"] = "../../victim"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ObjectStoreError, match="field 'object' is '../../victim'"):
        object_store.get("odd", strategy="artifact")


# permissions -------------------------------------------------------------------------

WORKFLOW = """\
kind: workflow
metadata: {name: pair}
spec:
  stages:
    - name: only
      target: teststages.state.pair
"""


@pytest.fixture
def no_umask() -> Iterator[None]:
    """The widest umask: every mode below is flowstage's own doing."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def modes(home: Path) -> dict[str, str]:
    return {
        str(p.relative_to(home.parent)): oct(stat.S_IMODE(p.stat().st_mode))
        for p in [home, *home.rglob("*")]
    }


def test_the_app_dir_and_everything_flowstage_writes_in_it_are_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_umask: None
) -> None:
    home = tmp_path / "a" / "home"  # with a parent that does not exist either
    monkeypatch.setenv("FLOWSTAGE_HOME", str(home))
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    applied = cli("apply", "-p", str(tmp_path / "wf.yaml"))
    assert applied.returncode == 0, applied.stderr
    run = run_workflow("pair", return_run=True)
    assert get_store().find_run(run.id)["result_kind"] == "file"  # a results/ pickle
    object_store.put("secret", {"token": "x"}, strategy="artifact")
    new_artifact("model").write("weights.bin", b"\x00")
    background = cli("run", "pair", "--no-wait")
    assert background.returncode == 0, background.stderr
    run_id = background.stdout.strip()
    deadline = time.monotonic() + 60
    while get_store().find_run(run_id)["state"] not in ("finished", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    found = modes(home)
    for name in ("logs", "results", "artifacts/default/secret", "flowstage.db-wal"):
        assert any(n.startswith(f"home/{name}") for n in found), (name, found)
    wide = {
        name: mode
        for name, mode in found.items()
        if mode != ("0o700" if (home.parent / name).is_dir() else "0o600")
    }
    assert not wide, wide
    assert oct(stat.S_IMODE((tmp_path / "a").stat().st_mode)) == "0o700"


def test_an_app_dir_open_to_other_users_is_tightened_with_a_warning(
    app_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app_home.chmod(0o755)
    (app_home / "flowstage.db").touch(mode=0o644)
    (app_home / "flowstage.db").chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="flowstage.appdir"):
        run_workflow(yaml.safe_load(WORKFLOW))
    assert stat.S_IMODE(app_home.stat().st_mode) == 0o700
    assert stat.S_IMODE((app_home / "flowstage.db").stat().st_mode) == 0o600
    assert "was readable by other users (mode drwxr-xr-x)" in caplog.text
    assert "now 0700" in caplog.text


# one artifact, many writers ----------------------------------------------------------

HAMMER = """
import sys, threading
from flowstage import object_store
from flowstage.artifacts import get_artifact

worker, rounds = sys.argv[1], int(sys.argv[2])
errors = []

def puts():
    for i in range(rounds):
        object_store.put("shared", {"worker": worker, "round": i}, strategy="artifact")

def metas():
    for i in range(rounds):
        get_artifact("shared")[f"{worker}-{i % 5}"] = i

def gets():
    for _ in range(rounds):
        try:
            object_store.get("shared", strategy="artifact")
        except Exception as exc:
            errors.append(repr(exc))

threads = [threading.Thread(target=f) for f in (puts, puts, metas, metas, gets)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(len(errors), errors[:1])
"""


def test_concurrent_puts_and_metadata_from_threads_and_processes_lose_nothing(
    tmp_path: Path,
) -> None:
    object_store.put("shared", {"worker": "first", "round": 0}, strategy="artifact")
    script = tmp_path / "hammer.py"
    script.write_text(HAMMER)
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), f"w{n}", "60"], stdout=subprocess.PIPE, text=True
        )
        for n in range(3)
    ]
    outputs = [w.communicate(timeout=120)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers)
    assert all(out.startswith("0 ") for out in outputs), outputs  # every get found its value
    value = object_store.get("shared", strategy="artifact")
    assert value["worker"] in ("w0", "w1", "w2")
    artifact = get_artifact("shared")
    keys = {f"w{n}-{i}" for n in range(3) for i in range(5)}
    assert set(artifact.metadata) == keys  # no metadata write was lost either
    value_files = [p.name for p in Path(artifact.path).iterdir() if p.name.startswith(".value-")]
    assert value_files == [artifact.object_info["file"]]  # and no value file left behind


# stale cluster memory ----------------------------------------------------------------


def started_at(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]


def test_stale_memory_cleanup_spares_other_pid_namespaces_and_live_owners() -> None:
    from flowstage.storage.memory import SharedDirMemory

    first = SharedDirMemory.create()
    folder = Path(first.path).parent
    first.close()
    namespace = "".join(c for c in os.readlink("/proc/self/ns/pid") if c.isdigit())
    start = started_at(os.getpid())
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid nobody has now
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        sleeper_start = Path(f"/proc/{sleeper.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        other_namespace = str(int(namespace) + 1)
        entries = {
            "dead, same namespace": (f"{gone.pid}-{start}-{namespace}", False),
            "dead, another namespace": (f"{gone.pid}-{start}-{other_namespace}", True),
            "live, another namespace": (f"{sleeper.pid}-1-{other_namespace}", True),
            "pid reused, same namespace": (f"{sleeper.pid}-1-{namespace}", False),
            "live owner, same namespace": (f"{sleeper.pid}-{sleeper_start}-{namespace}", True),
            "older flowstage, pid only": (f"{gone.pid}", True),
        }
        paths = {}
        for what, (tag, _) in entries.items():
            paths[what] = folder / f"flowstage-mem-{tag}-test{uuid.uuid4().hex[:8]}"
            paths[what].mkdir()
        second = SharedDirMemory.create()  # sweeps the stale ones
        second.close()
        kept = {what: paths[what].exists() for what in entries}
        assert kept == {what: keep for what, (_, keep) in entries.items()}
    finally:
        sleeper.kill()
        sleeper.wait()
        for path in paths.values():
            if path.exists():
                path.rmdir()
