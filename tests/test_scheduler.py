"""Scheduling semantics on the local executor: dataflow order, failures, resources."""

from __future__ import annotations

import dataclasses
import pickle
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from flowstage import StageError, WorkflowError, create_executor, get_run_context, run_workflow
from flowstage.core.errors import FlowstageError
from flowstage.core.loading import load_workflow


def wf(*stages: dict, name: str = "wf") -> dict:
    return {"metadata": {"name": name}, "spec": {"stages": list(stages)}}


def test_stage_starts_when_its_own_dependencies_finish_not_a_whole_level(local_executor) -> None:
    run = run_workflow(
        wf(
            {"name": "slow", "target": "teststages.timing.slow_root"},
            {"name": "fast", "target": "teststages.timing.fast_root"},
            {"name": "child", "target": "teststages.timing.after_fast", "depends_on": ["fast"]},
            {"name": "join", "target": "teststages.basic.concat", "depends_on": ["slow", "child"]},
        ),
        executor=local_executor,
        return_run=True,
    )
    assert run.state == "finished"
    assert run.result == list("slow") + list("fast-child")
    # a level-by-level scheduler would start `child` only after `slow` finished
    assert run.stages["child"].started_at < run.stages["slow"].finished_at


def test_siblings_run_in_parallel() -> None:
    with create_executor({"name": "local", "max_workers": 4}) as ex:
        run = run_workflow(
            wf(
                {"name": "root", "target": "teststages.basic.one"},
                {"name": "a", "target": "teststages.timing.window", "depends_on": ["root"]},
                {"name": "b", "target": "teststages.timing.window", "depends_on": ["root"]},
            ),
            executor=ex,
            return_run=True,
        )
    (a_start, a_end), (b_start, b_end) = run.result["a"], run.result["b"]
    assert a_start < b_end and b_start < a_end, "sibling stages did not overlap"


def test_several_terminal_stages_return_a_mapping_and_all_run(local_executor) -> None:
    result = run_workflow(
        wf(
            {"name": "numbers", "target": "teststages.basic.numbers"},
            {"name": "total", "target": "teststages.basic.total", "depends_on": ["numbers"]},
            {
                "name": "doubled",
                "target": "teststages.basic.double",
                "type": "parameterized",
                "depends_on": "numbers",
            },
            {"name": "lonely", "target": "teststages.basic.one"},
        ),
        {"n_vals": 4},
        executor=local_executor,
    )
    assert result == {"total": 6, "doubled": [0, 2, 4, 6], "lonely": 1}


def test_failure_cancels_what_has_not_started(local_executor) -> None:
    run = run_workflow(
        wf(
            {"name": "bad", "target": "teststages.timing.fail_fast"},
            {"name": "slow", "target": "teststages.timing.slow_root"},
            {
                "name": "after_slow",
                "target": "teststages.timing.never_called",
                "depends_on": ["slow"],
            },
            {
                "name": "after_bad",
                "target": "teststages.timing.never_called",
                "depends_on": ["bad"],
            },
        ),
        executor=local_executor,
        return_run=True,
    )
    assert run.state == "failed"
    assert isinstance(run.exception, StageError)
    assert run.exception.stage == "bad"
    assert "fail fast" in run.error
    assert run.stages["bad"].state == "failed"
    assert run.stages["after_bad"].state == "cancelled"
    assert run.stages["after_slow"].state == "cancelled"
    assert run.stages["after_slow"].started_at is None


def test_stage_error_carries_stage_attempts_traceback_and_cause(local_executor) -> None:
    with pytest.raises(StageError) as info:
        run_workflow(
            wf(
                {
                    "name": "bad",
                    "target": "teststages.basic.fails",
                    "retries": 1,
                    "retry_delay": "10ms",
                }
            ),
            executor=local_executor,
        )
    error = info.value
    assert error.stage == "bad"
    assert error.item_index is None
    assert error.attempts == 2
    assert "this stage always fails" in error.traceback
    assert "teststages/basic.py" in error.traceback
    assert isinstance(error.__cause__, ValueError)


def test_retries_with_backoff_then_success(tmp_path: Path, local_executor) -> None:
    run = run_workflow(
        wf(
            {
                "name": "flaky",
                "target": "teststages.basic.flaky",
                "retries": 3,
                "retry_delay": "20ms",
            }
        ),
        {"marker_dir": str(tmp_path / "tries"), "succeed_on": 3},
        executor=local_executor,
        return_run=True,
    )
    assert run.result == 3
    assert run.stages["flaky"].attempts == 3
    # delays of 20ms then 40ms: the doubling is visible in the duration
    assert run.stages["flaky"].duration >= 0.06


def test_timeout_fails_the_call_without_waiting_for_it(local_executor) -> None:
    began = time.monotonic()
    run = run_workflow(
        wf({"name": "stuck", "target": "teststages.timing.hang", "timeout": "200ms"}),
        executor=local_executor,
        return_run=True,
    )
    assert run.state == "failed"
    assert "timeout of 0.2s" in run.error
    assert time.monotonic() - began < 10


def test_map_item_timeout_and_retries_apply_per_item(local_executor) -> None:
    run = run_workflow(
        wf(
            {
                "name": "m",
                "target": "teststages.basic.sleep_then",
                "type": "parameterized",
                "map_on": "xs",
                "timeout": "100ms",
                "allow_partial_failure": True,
            }
        ),
        {"xs": [0.0, 5.0, 0.0]},
        executor=local_executor,
        return_run=True,
    )
    assert run.state == "finished"
    assert run.result == [0.0, 0.0]
    assert [item["index"] for item in run.stages["m"].failed_items] == [1]
    assert "timeout" in run.stages["m"].failed_items[0]["error"]


def test_result_that_cannot_cross_processes_names_the_stage() -> None:
    with pytest.raises(StageError, match="stage 'locker'.*cannot be sent between processes"):
        run_workflow(
            wf({"name": "locker", "target": "teststages.timing.returns_lock"}),
            executor={"name": "local", "processes": True, "max_workers": 1},
        )


def test_local_resources_are_ignored_without_a_capacity(local_executor) -> None:
    result = run_workflow(
        wf(
            {
                "name": "gpu",
                "target": "teststages.basic.one",
                "resources": {"gpus": 4, "cpus": 64, "memory": "1TB", "special": 2},
            }
        ),
        executor=local_executor,
    )
    assert result == 1


def test_local_capacity_admits_stages_that_fit() -> None:
    with create_executor({"name": "local", "max_workers": 4, "resources": {"gpus": 1}}) as ex:
        run = run_workflow(
            wf(
                {"name": "root", "target": "teststages.basic.one"},
                {
                    "name": "a",
                    "target": "teststages.timing.window",
                    "depends_on": ["root"],
                    "resources": {"gpus": 1},
                },
                {
                    "name": "b",
                    "target": "teststages.timing.window",
                    "depends_on": ["root"],
                    "resources": {"gpus": 1},
                },
            ),
            executor=ex,
            return_run=True,
        )
    (a_start, a_end), (b_start, b_end) = run.result["a"], run.result["b"]
    assert a_end <= b_start or b_end <= a_start, "two stages shared the only gpu"


def test_request_above_capacity_fails_before_the_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(WorkflowError, match="stage 'big': requests gpus=2.*capacity is gpus=1"):
        run_workflow(
            wf(
                {"name": "root", "target": "teststages.basic.mark"},
                {"name": "big", "target": "teststages.basic.one", "resources": {"gpus": 2}},
            ),
            {"marker": str(marker)},
            executor={"name": "local", "resources": {"gpus": 1}},
        )
    assert not marker.exists()


def test_unknown_executor_lists_installed() -> None:
    from flowstage.core.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match=r"unknown executor 'dsak' \(installed: .*local"):
        run_workflow(wf({"name": "a", "target": "teststages.basic.one"}), executor="dsak")


def test_unknown_executor_option_lists_valid_ones() -> None:
    from flowstage.core.errors import ExecutorError

    with pytest.raises(ExecutorError, match="unknown option 'max_worker'.*max_workers"):
        create_executor({"name": "local", "max_worker": 2})


def test_executor_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWSTAGE__EXECUTOR__NAME", "local")
    monkeypatch.setenv("FLOWSTAGE__EXECUTOR__PROCESSES", "true")
    monkeypatch.setenv("FLOWSTAGE__EXECUTOR__MAX_WORKERS", "1")
    ex = create_executor()
    assert ex.options.processes is True and ex.options.max_workers == 1


def test_get_run_context_outside_a_run_is_a_clear_error() -> None:
    with pytest.raises(FlowstageError, match="outside a running workflow"):
        get_run_context()


def test_long_lived_executor_serves_many_runs() -> None:
    spec = wf(
        {"name": "n", "target": "teststages.basic.numbers"},
        {"name": "t", "target": "teststages.basic.total", "depends_on": ["n"]},
    )
    with create_executor({"name": "local", "processes": True, "max_workers": 2}) as ex:
        results = [run_workflow(spec, {"n_vals": n}, executor=ex) for n in range(1, 6)]
        assert ex.started
    assert results == [0, 1, 3, 6, 10]
    assert not ex.started


def test_callable_targets_from_python(local_executor) -> None:
    def make(n_vals: int) -> list[int]:
        return list(range(n_vals))

    result = run_workflow(
        wf(
            {"name": "make", "target": make},
            {
                "name": "square",
                "target": lambda x: x * x,
                "type": "parameterized",
                "depends_on": ["make"],
            },
        ),
        {"n_vals": 4},
        executor=local_executor,
    )
    assert result == [0, 1, 4, 9]


def test_lambdas_and_closures_run_on_processes() -> None:
    offset = 10
    result = run_workflow(
        wf(
            {"name": "make", "target": lambda n_vals: list(range(n_vals))},
            {
                "name": "shift",
                "target": lambda x: x + offset,
                "type": "parameterized",
                "depends_on": ["make"],
            },
        ),
        {"n_vals": 3},
        executor={"name": "local", "processes": True, "max_workers": 2},
    )
    assert result == [10, 11, 12]


@dataclasses.dataclass
class _Threshold:
    value: float


def _shipped_definition(definition: Any) -> Any:
    """The workflow a worker sees in its run context (a fresh run id: workers cache by id)."""
    from flowstage.core.context import ConfigView, RunContext, RunInfo
    from flowstage.core.runs import now

    run = RunInfo(uuid.uuid4().hex, definition.name, "api", now())
    context = RunContext({}, ConfigView({}, {}), "default", "threads", definition, run)
    return pickle.loads(pickle.dumps(context)).definition


@pytest.mark.parametrize("annotation", ["plain text", _Threshold(0.5)])
def test_run_context_carries_the_workflow_unchanged(annotation: Any, tmp_path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(
        "kind: workflow\nmetadata:\n  name: shipped\nspec:\n  stages:\n"
        "    - name: a\n      target: teststages.basic.one\n      retries: 2\n"
        "      resources: {memory: 2GB, licences: 1}\n"
        "    - name: b\n      target: teststages.basic.double\n      depends_on: [a]\n"
    )
    definition = load_workflow(str(path))
    definition.metadata.annotations["threshold"] = annotation  # not JSON: must not become a dict
    shipped = _shipped_definition(definition)
    assert shipped == definition
    assert type(shipped.metadata.annotations["threshold"]) is type(annotation)
    assert shipped.source == str(path) and shipped.label == definition.label


def test_function_targets_travel_with_the_run_not_with_every_task() -> None:
    """A function target (here a closure, pickled by value) reaches a worker once per
    run: every task of the run calls the same function object, and a task carries only
    the stage's name for it."""
    import cloudpickle

    from flowstage.core.calls import StageTask, _target
    from flowstage.core.context import ConfigView, RunContext, RunInfo
    from flowstage.core.runs import now

    payload = b"x" * 200_000
    definition = load_workflow(
        wf(
            {"name": "a", "target": lambda: len(payload)},
            {"name": "b", "target": lambda x: x + len(payload), "depends_on": ["a"]},
        )
    )
    run = RunInfo(uuid.uuid4().hex, definition.name, "api", now())
    context = RunContext({}, ConfigView({}, {}), "default", "threads", definition, run)
    context.ship_with(lambda blob: "stand-in")  # as engines do with large contexts
    tasks = [StageTask(s.name, s.target, (), context) for s in definition.spec.stages]
    shipped = [cloudpickle.dumps(task) for task in tasks]
    assert all(len(blob) < 2_000 for blob in shipped)
    context.__dict__.pop("_shipped")
    first, second = (
        pickle.loads(cloudpickle.dumps(StageTask("b", definition.stage("b").target, (), context)))
        for _ in range(2)
    )
    assert _target(first) is _target(second)
    assert (
        _target(first) is not definition.stage("b").target
    )  # the worker's copy, sent with the run
    assert _target(first)(1) == 200_001

    other = StageTask("b", lambda x: x, (), context)  # not the stage's own target: travels itself
    assert _target(pickle.loads(cloudpickle.dumps(other)))(7) == 7


def test_a_task_sent_on_from_a_worker_finds_its_target() -> None:
    import cloudpickle

    from flowstage.core.calls import StageTask, _target
    from flowstage.core.context import ConfigView, RunContext, RunInfo
    from flowstage.core.runs import now

    definition = load_workflow(wf({"name": "a", "target": lambda: 5}))
    run = RunInfo(uuid.uuid4().hex, definition.name, "api", now())
    context = RunContext({}, ConfigView({}, {}), "default", "ray", definition, run)
    restored = pickle.loads(cloudpickle.dumps(context))  # as a worker has it
    task = StageTask("a", restored.definition.stage("a").target, (), restored)
    assert _target(pickle.loads(cloudpickle.dumps(task)))() == 5


def test_a_target_replaced_after_the_context_was_pickled_travels_itself() -> None:
    import cloudpickle

    from flowstage.core.calls import StageTask, _target
    from flowstage.core.context import ConfigView, RunContext, RunInfo
    from flowstage.core.runs import now

    definition = load_workflow(wf({"name": "a", "target": lambda: "old"}))
    run = RunInfo(uuid.uuid4().hex, definition.name, "api", now())
    context = RunContext({}, ConfigView({}, {}), "default", "ray", definition, run)
    context.pickled()
    definition.stage("a").target = lambda: "new"
    task = pickle.loads(
        cloudpickle.dumps(StageTask("a", definition.stage("a").target, (), context))
    )
    assert _target(task)() == "new"


def test_stage_tasks_keep_their_class_and_fields_when_pickled() -> None:
    import cloudpickle

    from flowstage.core.calls import StageTask
    from flowstage.core.context import ConfigView, RunContext, RunInfo
    from flowstage.core.runs import now

    @dataclasses.dataclass
    class SizedTask(StageTask):
        size: int = 0

    definition = load_workflow(wf({"name": "a", "target": "teststages.basic.one"}))
    run = RunInfo(uuid.uuid4().hex, definition.name, "api", now())
    context = RunContext({}, ConfigView({}, {}), "default", "ray", definition, run)
    task = pickle.loads(
        cloudpickle.dumps(
            SizedTask("a", "teststages.basic.one", ("p",), context, retries=2, size=3)
        )
    )
    assert type(task).__name__ == "SizedTask" and task.size == 3 and task.retries == 2
    assert task.search_paths == ("p",) and task.target == "teststages.basic.one"


def _run_in_child() -> None:
    assert (
        run_workflow(wf({"name": "one", "target": "teststages.basic.one"}), executor="local") == 1
    )


def test_a_forked_child_runs_workflows_after_its_parent_did() -> None:
    """The threads that start engines belong to the parent: a forked child needs its own."""
    import multiprocessing

    assert (
        run_workflow(wf({"name": "one", "target": "teststages.basic.one"}), executor="local") == 1
    )
    child = multiprocessing.get_context("fork").Process(target=_run_in_child)
    child.start()
    child.join(60)
    if child.exitcode is None:
        child.kill()
    assert child.exitcode == 0


def test_a_large_run_context_travels_compressed_and_comes_back_whole() -> None:
    from flowstage.core.context import ConfigView, RunContext, RunInfo
    from flowstage.core.runs import now

    stages = [{"name": "s0", "target": "teststages.basic.one"}] + [
        {"name": f"s{i}", "target": "teststages.basic.double", "depends_on": [f"s{i - 1}"]}
        for i in range(1, 100)
    ]
    definition = load_workflow(wf(*stages))
    run = RunInfo(uuid.uuid4().hex, definition.name, "api", now())
    context = RunContext({"n": 1}, ConfigView({"k": "v"}, {}), "default", "ray", definition, run)
    assert (
        len(context.pickled()) < len(pickle.dumps(definition.model_dump(exclude_defaults=True))) / 2
    )
    restored = pickle.loads(pickle.dumps(context.for_stage("s5")))
    assert (
        restored.definition == definition and restored.stage == "s5" and restored.config["k"] == "v"
    )


def test_a_worker_rebuilds_the_workflow_only_when_a_stage_reads_it() -> None:
    """Validating a large workflow costs more than a small call: a restored context keeps
    it compact until ``definition`` is read, then every copy of it shares one model."""
    from flowstage.core.calls import StageTask, _target
    from flowstage.core.context import ConfigView, RunContext, RunInfo
    from flowstage.core.runs import now

    definition = load_workflow(
        wf(
            {"name": "a", "target": lambda: 1},
            {"name": "b", "target": "teststages.basic.double", "depends_on": ["a"]},
        )
    )
    run = RunInfo(uuid.uuid4().hex, definition.name, "api", now())
    context = RunContext({}, ConfigView({}, {}), "default", "ray", definition, run)
    import cloudpickle

    task = pickle.loads(
        cloudpickle.dumps(StageTask("a", definition.stage("a").target, (), context))
    )
    assert _target(task)() == 1
    assert _target(task) is not definition.stage("a").target  # the worker's copy
    restored = task.context
    assert restored.__dict__["_definition"].model is None  # the target came from the compact form
    other = restored.for_stage("b")
    assert other.definition.stage("b") == definition.stage("b")  # (the lambda is a copy)
    assert restored.definition is other.definition


def test_inspected_functions_are_not_kept_alive() -> None:
    """A function sent by value is a new object in every run of a worker: the signature
    cache must not keep it (and what it captured) alive."""
    import gc
    import weakref

    from flowstage.core.targets import signature_of

    class Captured:
        pass

    captured = Captured()
    alive = weakref.ref(captured)

    def make(held: Any) -> Any:
        def target(x: int) -> int:
            return x + (held is not None)

        return target

    target = make(captured)
    assert signature_of(target).positional == ("x",)
    del target, captured
    gc.collect()
    assert alive() is None


def test_a_worker_keeps_restored_contexts_within_a_byte_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each run's context is unpickled once per worker and kept for its next tasks, but
    contexts carrying much (a large input, sent stage code) do not pile up."""
    from flowstage.core import context as contexts
    from flowstage.core.context import ConfigView, RunContext, RunInfo
    from flowstage.core.runs import now

    monkeypatch.setattr(contexts, "KEEP_RESTORED_BYTES", 1_000_000)
    definition = load_workflow(wf({"name": "a", "target": "teststages.basic.one"}))

    def sent(size: int) -> RunContext:
        run = RunInfo(uuid.uuid4().hex, definition.name, "api", now())
        return RunContext(
            {"blob": "x" * size}, ConfigView({}, {}), "default", "ray", definition, run
        )

    def restore(context: RunContext) -> RunContext:  # what a task of the run gets in a worker
        return pickle.loads(pickle.dumps(context))

    small, large, third, fourth = sent(1_000), sent(400_000), sent(400_000), sent(400_000)
    copies = [restore(context) for context in (small, large, third)]
    assert [restore(context) for context in (small, large, third)] == copies
    assert all(
        restore(c) is copy for c, copy in zip((small, large, third), copies, strict=True)
    )  # 0.8 MB: all kept
    assert restore(large) is copies[1]  # used again: now the most recent
    restore(fourth)  # 1.2 MB: the least recently used are forgotten until it fits
    assert restore(large) is copies[1]
    assert restore(third) is not copies[2] and restore(third).input == third.input


def test_threads_of_a_worker_restore_contexts_of_many_runs_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tasks of several runs start on the threads of one worker (Dask): the contexts they
    restore are kept and forgotten without losing count."""
    import threading

    from flowstage.core import context as contexts
    from flowstage.core.context import ConfigView, RunContext, RunInfo
    from flowstage.core.runs import now

    monkeypatch.setattr(contexts, "KEEP_RESTORED", 12)
    interval = sys.getswitchinterval()
    definition = load_workflow(wf({"name": "a", "target": "teststages.basic.one"}))
    sent = [
        pickle.dumps(
            RunContext(
                {"i": i},
                ConfigView({}, {}),
                "default",
                "ray",
                definition,
                RunInfo(uuid.uuid4().hex, definition.name, "api", now()),
            )
        )
        for i in range(40)
    ]
    errors: list[BaseException] = []

    def worker_thread(k: int) -> None:
        try:
            for j in range(2000):
                assert pickle.loads(sent[(j * 7 + k) % 40]).input["i"] == (j * 7 + k) % 40
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker_thread, args=(k,)) for k in range(6)]
    sys.setswitchinterval(1e-6)  # the threads take turns often, as on a busy worker
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    kept = list(contexts._restored.values())
    assert len(kept) <= 12
    assert contexts._restored_bytes == sum(len(c.__dict__["_blob"]) for c in kept)
