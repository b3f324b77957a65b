"""The behaviour suite on every executor: local threads, local processes, Dask and Ray.

Each test runs on the session's started executor of each engine (``executor`` fixture
in conftest) and asserts the same result everywhere.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowstage import StageError, run_workflow

B = "teststages.basic."
E = "teststages.engines."


def workflow(name: str, *stages: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "workflow", "metadata": {"name": name}, "spec": {"stages": list(stages)}}


def stage(name: str, target: str, *depends_on: str, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "target": target}
    if depends_on:
        spec["depends_on"] = list(depends_on)
    spec.update(extra)
    return spec


def param(name: str, target: str, *depends_on: str, **extra: Any) -> dict[str, Any]:
    return stage(name, target, *depends_on, type="parameterized", **extra)


# --- dataflow ------------------------------------------------------------------------


def test_simple_chain(executor):
    wf = workflow("chain", stage("numbers", B + "numbers"), stage("total", B + "total", "numbers"))
    assert run_workflow(wf, {"n_vals": 5}, executor=executor) == 10


def test_parallel_branches_and_funnel(executor):
    wf = workflow(
        "funnel",
        stage("numbers", B + "numbers"),
        param("doubled", B + "double", "numbers"),
        param("same", B + "fail_on_two", "numbers", allow_partial_failure=True),
        stage("joined", B + "concat", "doubled", "same"),
    )
    assert run_workflow(wf, {"n_vals": 4}, executor=executor) == [0, 2, 4, 6, 0, 1, 3]


def test_branches_run_at_the_same_time(executor):
    wf = workflow(
        "overlap",
        stage("a", E + "stamp"),
        stage("b", E + "stamp"),
        stage("both", E + "spans", "a", "b"),
    )
    # A fresh engine may not have started its second worker process yet: the first run
    # makes it start one (Ray starts workers on demand).
    run_workflow(wf, {"seconds": 0.5}, executor=executor)
    (a_start, a_end), (b_start, b_end) = run_workflow(wf, {"seconds": 1.0}, executor=executor)
    assert a_start < b_end and b_start < a_end, (
        f"sibling stages did not overlap: {a_start, a_end, b_start, b_end}"
    )


def test_parameterized_chain(executor):
    wf = workflow(
        "pchain",
        stage("numbers", B + "numbers"),
        param("twice", B + "double", "numbers"),
        param("four_times", B + "double", "twice"),
        stage("total", B + "total", "four_times"),
    )
    assert run_workflow(wf, {"n_vals": 50}, executor=executor) == 4 * sum(range(50))


def test_chained_maps_overlap(executor):
    """The second map starts on the first one's finished items while its slow item runs."""
    wf = workflow(
        "streamed",
        param("slept", E + "timed_sleep", map_on="delays"),
        param("next", E + "started_after", "slept"),
    )
    run_workflow(
        wf, {"delays": [0.01, 0.3]}, executor=executor
    )  # a fresh engine starts its workers
    run = run_workflow(wf, {"delays": [0.05, 1.5]}, executor=executor, return_run=True)
    assert run.state == "finished", run.error
    (fast, _, fast_next_started), (slow, slow_finished, _) = run.result
    assert (fast, slow) == (0.05, 1.5)
    assert fast_next_started < slow_finished, "the second map waited for the whole first map"
    assert run.stages["next"].items_done == run.stages["next"].items_total == 2


def test_failure_in_a_streaming_map_is_its_own(executor):
    wf = workflow(
        "streamed_failure",
        param("first", B + "fail_on_two", map_on="values"),
        param("second", B + "double", "first"),
    )
    run = run_workflow(wf, {"values": [0, 1, 2, 3]}, executor=executor, return_run=True)
    assert run.state == "failed"
    assert run.exception.stage == "first" and run.exception.item_index == 2
    assert run.stages["first"].state == "failed"
    assert (
        run.stages["second"].state == "cancelled"
    )  # it ran on items 0 and 1, but the failure is not its own


def test_map_gets_other_dependencies_as_extra_arguments(executor):
    wf = workflow(
        "extra",
        stage("numbers", B + "numbers"),
        stage("one", B + "one"),
        param("added", B + "add", "numbers", "one"),
    )
    assert run_workflow(wf, {"n_vals": 4}, executor=executor) == [1, 2, 3, 4]


def test_map_on_input_key(executor):
    wf = workflow("mapon", param("shifted", B + "add_offset", map_on="values"))
    assert run_workflow(wf, {"values": [1, 2, 3], "offset": 10}, executor=executor) == [11, 12, 13]


def test_map_on_with_dependency(executor):
    wf = workflow(
        "mapon_dep", stage("one", B + "one"), param("added", B + "add", "one", map_on="values")
    )
    assert run_workflow(wf, {"values": [5, 6]}, executor=executor) == [6, 7]


def test_big_map_keeps_item_order(executor):
    wf = workflow("big", stage("numbers", B + "numbers"), param("doubled", B + "double", "numbers"))
    assert run_workflow(wf, {"n_vals": 5000}, executor=executor) == [2 * i for i in range(5000)]


def test_map_over_a_dict_goes_over_its_keys(executor):
    # issue 15, item 8: as `for key in d` in Python and in Flowdapt, not (key, value) pairs
    wf = workflow("dictmap", param("keys", E + "type_name", map_on="mapping"))
    assert run_workflow(wf, {"mapping": {"a": 1, "b": 2}}, executor=executor) == ["str", "str"]
    wf = workflow(
        "dictdep",
        stage("summary", B + "context_summary"),
        param("keys", E + "type_name", "summary"),
    )
    assert run_workflow(wf, {}, executor=executor) == ["str"] * 10


def test_several_terminal_stages_return_a_dict(executor):
    wf = workflow(
        "terminals",
        stage("numbers", B + "numbers"),
        stage("total", B + "total", "numbers"),
        param("doubled", B + "double", "numbers"),
        stage("one", B + "one"),
    )
    assert run_workflow(wf, {"n_vals": 3}, executor=executor) == {
        "total": 3,
        "doubled": [0, 2, 4],
        "one": 1,
    }


def test_same_workflow_twice_gives_fresh_results(executor):
    wf = workflow("twice", stage("numbers", B + "numbers"), stage("total", B + "total", "numbers"))
    assert run_workflow(wf, {"n_vals": 3}, executor=executor) == 3
    assert run_workflow(wf, {"n_vals": 4}, executor=executor) == 6


# --- stage kinds -----------------------------------------------------------------------


def test_async_stages(executor):
    wf = workflow(
        "async",
        stage("numbers", B + "async_numbers"),
        param("doubled", B + "async_double", "numbers"),
        stage("total", B + "total", "doubled"),
    )
    assert run_workflow(wf, {"n_vals": 6}, executor=executor) == 30


def test_generator_stage_becomes_a_list(executor):
    wf = workflow("gen", stage("count", B + "count_up"), param("doubled", B + "double", "count"))
    assert run_workflow(wf, {"n_vals": 4}, executor=executor) == [0, 2, 4, 6]


# --- run context -------------------------------------------------------------------------


def test_run_context_in_workers(executor, tmp_path: Path):
    from flowstage.core.loading import load_workflow

    path = tmp_path / "ctx.yaml"
    path.write_text(
        yaml.safe_dump(
            workflow(
                "ctx",
                stage(
                    "summary",
                    B + "context_summary",
                    retries=1,
                    resources={"memory": "1KB", "custom": 0},
                ),
            )
        )
    )
    run = run_workflow(
        str(path), {"n_vals": 2}, executor=executor, namespace="team", return_run=True
    )
    assert run.state == "finished", run.error
    assert run.result == {
        "stage": "summary",
        "item_index": None,
        "input": {"n_vals": 2},
        "namespace": "team",
        "executor": executor.name,
        "workflow": "ctx",
        "run_id": run.id,
        "config_input": {"n_vals": 2},
        # the whole definition, as loaded in the driver
        "definition": load_workflow(str(path)).model_dump(),
        "source": str(path),
    }


def test_run_context_in_helper_functions_and_map_items(executor):
    wf = workflow(
        "ctx_helpers",
        stage("helper", B + "calls_helper"),
        param("items", E + "item_and_stage", map_on="values"),
    )
    result = run_workflow(wf, {"values": ["a", "b", "c"]}, executor=executor)
    assert result == {
        "helper": "helper",
        "items": [["a", "items", 0], ["b", "items", 1], ["c", "items", 2]],
    }


def test_large_run_input_reaches_every_stage_and_item(executor):
    # Above the size Ray inlines in tasks: the context is stored once per run there.
    blob = "x" * 300_000
    wf = workflow(
        "big_input",
        stage("size", E + "input_size"),
        param("items", E + "size_of_item", map_on="values"),
        stage("again", E + "context_blob_size", "size"),
    )
    result = run_workflow(wf, {"blob": blob, "values": [1, 2]}, executor=executor)
    assert result == {"items": [300_001, 300_002], "again": 300_000}


# --- failures ------------------------------------------------------------------------------


def test_stage_error_carries_stage_attempts_and_worker_traceback(executor):
    wf = workflow("boom", stage("one", B + "one"), stage("broken", B + "fails", "one"))
    with pytest.raises(StageError) as info:
        run_workflow(wf, executor=executor)
    error = info.value
    assert error.stage == "broken"
    assert error.item_index is None
    assert error.attempts == 1
    assert "this stage always fails" in str(error)
    assert "def fails" in error.traceback or "in fails" in error.traceback
    assert isinstance(error.__cause__, ValueError)


def test_failed_map_item_names_its_index(executor):
    wf = workflow(
        "item_boom", stage("numbers", B + "numbers"), param("checked", B + "fail_on_two", "numbers")
    )
    with pytest.raises(StageError) as info:
        run_workflow(wf, {"n_vals": 5}, executor=executor)
    assert info.value.stage == "checked"
    assert info.value.item_index == 2
    assert "bad item 2" in info.value.traceback
    assert isinstance(info.value.__cause__, ValueError)


def test_partial_failure_is_recorded(executor):
    wf = workflow(
        "partial",
        stage("numbers", B + "numbers"),
        param("checked", B + "fail_on_two", "numbers", allow_partial_failure=True),
    )
    run = run_workflow(wf, {"n_vals": 5}, executor=executor, return_run=True)
    assert run.state == "finished", run.error
    assert run.result == [0, 1, 3, 4]
    [failed] = run.stages["checked"].failed_items
    traceback = failed.pop("traceback")
    assert failed == {"index": 2, "error": "ValueError: bad item 2", "attempts": 1}
    assert traceback.startswith("Traceback (most recent call last)")
    assert "in fail_on_two" in traceback and traceback.endswith("ValueError: bad item 2\n")


def test_failure_returned_as_run(executor):
    wf = workflow("failed_run", stage("broken", B + "fails"))
    run = run_workflow(wf, executor=executor, return_run=True)
    assert run.state == "failed"
    assert "this stage always fails" in run.error
    assert run.stages["broken"].state == "failed"


def test_retries_until_success(executor, tmp_path: Path):
    wf = workflow("retry", stage("flaky", B + "flaky", retries=3, retry_delay="10ms"))
    run = run_workflow(
        wf, {"marker_dir": str(tmp_path / "calls")}, executor=executor, return_run=True
    )
    assert run.state == "finished", run.error
    assert run.result == 3
    assert run.stages["flaky"].attempts == 3


def test_retries_exhausted(executor, tmp_path: Path):
    wf = workflow("retry_out", stage("flaky", B + "flaky", retries=1, retry_delay="10ms"))
    with pytest.raises(StageError) as info:
        run_workflow(
            wf, {"marker_dir": str(tmp_path / "calls"), "succeed_on": 5}, executor=executor
        )
    assert info.value.attempts == 2
    assert "attempt 2 fails" in str(info.value)


def test_map_items_are_retried(executor, tmp_path: Path):
    wf = workflow(
        "retry_map", param("flaky", B + "flaky", map_on="dirs", retries=2, retry_delay="10ms")
    )
    dirs = [str(tmp_path / f"item{i}") for i in range(3)]
    run = run_workflow(wf, {"dirs": dirs}, executor=executor, return_run=True)
    assert run.state == "finished", run.error
    assert run.result == [3, 3, 3]
    assert run.stages["flaky"].attempts == 3


def test_timeout_fails_the_stage_quickly(executor):
    wf = workflow("slow", stage("sleepy", B + "sleep_then", timeout="300ms"))
    began = time.monotonic()
    with pytest.raises(StageError) as info:
        run_workflow(wf, {"x": 20}, executor=executor)
    assert time.monotonic() - began < 10
    assert info.value.stage == "sleepy"
    assert "timeout" in str(info.value)


def test_map_item_timeout(executor):
    wf = workflow("slow_items", param("sleepy", B + "sleep_then", map_on="delays", timeout="300ms"))
    began = time.monotonic()
    with pytest.raises(StageError) as info:
        run_workflow(wf, {"delays": [0.0, 20.0]}, executor=executor)
    assert time.monotonic() - began < 10
    assert info.value.item_index == 1


def test_failure_cancels_stages_not_started(executor, tmp_path: Path):
    marker = tmp_path / "should-not-exist"
    wf = workflow("cancel", stage("broken", B + "fails"), stage("after", B + "mark", "broken"))
    run = run_workflow(wf, {"marker": str(marker)}, executor=executor, return_run=True)
    assert run.state == "failed"
    assert not marker.exists()
    assert run.stages["after"].state in ("pending", "cancelled")


def test_every_stage_of_a_chain_is_recorded(executor):
    # On Ray, stages inside a chain are pipelined and their ends noticed by a poll, or
    # when a later call's end shows they are over: never after a stage that used them.
    stages = [stage("s0", B + "one")] + [
        stage(f"s{i}", B + "double", f"s{i - 1}") for i in range(1, 6)
    ]
    stages += [stage("listed", B + "numbers", "s5"), param("mapped", B + "double", "listed")]
    run = run_workflow(workflow("recorded_chain", *stages), executor=executor, return_run=True)
    assert run.state == "finished", run.error
    assert run.result == [2 * i for i in range(32)]
    for spec in stages:
        record = run.stages[spec["name"]]
        assert record.state == "finished", spec["name"]
        assert record.started_at <= record.finished_at <= run.finished_at, spec["name"]
        for dependency in spec.get("depends_on", []):
            assert run.stages[dependency].finished_at <= record.finished_at, (
                dependency,
                spec["name"],
            )


def test_failure_inside_a_chain_is_the_failing_stages(executor):
    wf = workflow(
        "broken_chain",
        stage("first", B + "one"),
        stage("broken", B + "fails", "first"),
        stage("third", B + "double", "broken"),
        stage("fourth", B + "double", "third"),
    )
    run = run_workflow(wf, executor=executor, return_run=True)
    assert run.state == "failed"
    assert isinstance(run.exception, StageError) and run.exception.stage == "broken"
    assert "this stage always fails" in run.error
    states = {name: record.state for name, record in run.stages.items()}
    assert states["first"] == "finished" and states["broken"] == "failed"
    assert states["third"] in ("pending", "cancelled") and states["fourth"] in (
        "pending",
        "cancelled",
    )


# --- where the work runs --------------------------------------------------------------


def test_user_modules_and_workflow_folder_import_in_workers(
    executor, app_home: Path, tmp_path: Path
):
    tag = uuid.uuid4().hex[:8]
    (app_home / "user_modules").mkdir(exist_ok=True)
    (app_home / "user_modules" / f"um_{tag}.py").write_text(
        "import os\n\ndef where(n_vals):\n    return [n_vals, os.getpid()]\n"
    )
    folder = tmp_path / "wf"
    folder.mkdir()
    (folder / f"local_{tag}.py").write_text("def plus_one(pair):\n    return pair[0] + 1\n")
    (folder / "wf.yaml").write_text(
        "kind: workflow\nmetadata:\n  name: modules\nspec:\n  stages:\n"
        f"    - name: where\n      target: user_modules.um_{tag}.where\n"
        f"    - name: plus\n      target: local_{tag}.plus_one\n      depends_on: [where]\n"
        f"    - name: pid\n      target: user_modules.um_{tag}.where\n"
    )
    result = run_workflow(str(folder / "wf.yaml"), {"n_vals": 41}, executor=executor)
    assert result["plus"] == 42
    if executor.name in ("dask", "ray") or getattr(executor.options, "processes", False):
        assert result["pid"][1] != os.getpid(), "the stage ran in the driver, not in a worker"
