"""How a call's value travels between Dask workers and to the driver (``Kept``): as the
value itself, or as the failure to move it, naming the stage and the map item."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
import threading

import pytest

from flowstage.core.calls import CallFailure
from flowstage.core.errors import ResultNotTransferable
from flowstage.executors.dask.results import Kept, opened, register_with_dask

distributed_serialize = pytest.importorskip(
    "distributed.protocol.serialize", reason="pip install 'flowstage[dask]'"
)
np = pytest.importorskip("numpy")
register_with_dask()  # as the executor does when it starts (a worker, when it imports the module)


def through_dask(kept: Kept, protocol: int | None = None) -> Kept:
    """``kept`` after Dask's own serialization, as between two processes (a comm passes
    a context naming both ends; spilling to disk passes none)."""
    context: dict[str, object] = {"sender": "a worker", "recipient": "another process"}
    if protocol is not None:
        context["pickle-protocol"] = protocol
    header, frames = distributed_serialize.serialize(kept, context=context)
    frames = [bytes(memoryview(frame).cast("B")) for frame in frames]  # copied, as off the wire
    return distributed_serialize.deserialize(header, frames)


@pytest.mark.parametrize("protocol", [4, 5])
def test_values_arrive_whole_by_pickle(protocol: int):
    array = np.arange(100_000, dtype="float64")
    arrived = pickle.loads(
        pickle.dumps(Kept({"rows": [1, 2], "array": array}, "stage"), protocol=protocol)
    )
    value = opened(arrived)
    assert value["rows"] == [1, 2] and np.array_equal(value["array"], array)


def test_arrays_travel_as_frames_of_their_own_through_dask():
    array = np.arange(1_000_000, dtype="float64")
    header, frames = distributed_serialize.serialize(Kept(array, "stage"))
    assert header["sub-header"]["value"]["serializer"] == "dask"  # Dask's own array serializer
    assert max(memoryview(frame).nbytes for frame in frames) >= array.nbytes
    assert np.array_equal(opened(through_dask(Kept(array, "stage"))), array)


def test_a_value_that_cannot_be_serialized_arrives_as_its_stage_failure():
    arrived = through_dask(Kept({"lock": threading.Lock()}, "locker"))
    with pytest.raises(CallFailure) as info:
        opened(arrived)
    assert info.value.stage == "locker" and info.value.item_index is None
    assert isinstance(info.value.cause, ResultNotTransferable)
    assert "cannot be serialized" in str(info.value) and "lock" in str(info.value)


def test_a_value_that_cannot_be_serialized_stays_in_memory_rather_than_spill():
    """Spilling to disk (no context: not another process) fails as Dask expects, so
    Dask keeps the value in memory; pickling fails as without the wrapper."""
    from distributed.protocol import serialize_bytelist

    kept = Kept({"lock": threading.Lock()}, "locker")
    with pytest.raises(TypeError):
        serialize_bytelist(kept, on_error="raise")
    with pytest.raises(TypeError):
        pickle.dumps(kept)
    spilled = distributed_serialize.deserialize(*distributed_serialize.serialize(Kept([1, 2], "s")))
    assert opened(spilled) == [1, 2]  # a value that can be serialized spills as usual


def test_a_batch_failure_names_the_item():
    batch = (
        [0, threading.Lock(), 2],
        [],
        1,
        0.0,
    )  # run_batch's (values, failures, attempts, seconds)
    with pytest.raises(CallFailure) as info:
        opened(through_dask(Kept(batch, "items", batch_start=10)))
    assert info.value.stage == "items" and info.value.item_index == 11


def test_a_value_whose_class_is_missing_here_arrives_as_its_stage_failure(tmp_path):
    """Pickled in a process that has the class's module, unpickled in one that lacks it."""
    (tmp_path / "elsewhere_only.py").write_text("class Thing:\n    pass\n")
    code = textwrap.dedent(f"""
        import pickle, sys
        sys.path.insert(0, {str(tmp_path)!r})
        import elsewhere_only
        from flowstage.executors.dask.results import Kept
        sys.stdout.buffer.write(pickle.dumps(Kept([elsewhere_only.Thing()], "made")))
    """)
    data = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True).stdout
    arrived = pickle.loads(data)
    with pytest.raises(CallFailure) as info:
        opened(arrived)
    assert info.value.stage == "made"
    assert "cannot be unpickled where it is needed" in str(info.value) and "elsewhere_only" in str(
        info.value
    )
    # The task's code arrives (here: the module becomes importable): opened once more, it unpickles.
    sys.path.insert(0, str(tmp_path))
    try:
        assert type(opened(arrived)[0]).__name__ == "Thing"
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("elsewhere_only", None)


def test_dask_counts_the_value_not_the_wrapper():
    from dask.sizeof import sizeof

    array = np.zeros(1_000_000)
    assert sizeof(Kept(array, "stage")) >= array.nbytes


def test_other_values_pass_as_they_are():
    assert opened(5) == 5 and opened(None) is None
