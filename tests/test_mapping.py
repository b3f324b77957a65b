"""Parameterized stages: what a map goes over, what each call gets, what comes out."""

from __future__ import annotations

import json

import pytest

from flowstage import StageError, create_executor, run_workflow
from flowstage.core.runs import MAX_BATCHES, StageRecord
from flowstage.state.rows import stages_json


def wf(*stages: dict) -> dict:
    return {"metadata": {"name": "maps"}, "spec": {"stages": list(stages)}}


@pytest.fixture(scope="module", params=["threads", "processes"])
def local(request: pytest.FixtureRequest):
    spec = {"name": "local", "max_workers": 2, "processes": request.param == "processes"}
    with create_executor(spec) as ex:
        yield ex


def test_chain_of_parameterized_stages(local) -> None:
    result = run_workflow(
        wf(
            {"name": "create_city_list", "target": "teststages.mapping.city_list"},
            {
                "name": "fetch_city_data",
                "target": "teststages.mapping.fetch",
                "type": "parameterized",
                "depends_on": "create_city_list",
            },
            {
                "name": "process_city_data",
                "target": "teststages.mapping.greet",
                "type": "parameterized",
                "depends_on": ["fetch_city_data"],
            },
        ),
        executor=local,
    )
    assert result == ["hello OSLO!", "hello LIMA!", "hello RIGA!"]


def test_dict_maps_over_keys_and_tuple_over_values(local) -> None:
    # a dict maps as Python (and Flowdapt) iterate it: over its keys (issue 15, item 8)
    result = run_workflow(
        wf(
            {"name": "d", "target": "teststages.mapping.as_dict"},
            {
                "name": "keys",
                "target": "teststages.mapping.identity",
                "type": "parameterized",
                "depends_on": ["d"],
            },
            {"name": "t", "target": "teststages.mapping.as_tuple"},
            {
                "name": "same",
                "target": "teststages.mapping.identity",
                "type": "parameterized",
                "depends_on": ["t"],
            },
        ),
        executor=local,
    )
    assert result == {"keys": ["a", "b"], "same": [3, 4]}


def test_other_dependencies_are_passed_to_every_call(local) -> None:
    result = run_workflow(
        wf(
            {"name": "numbers", "target": "teststages.basic.numbers"},
            {"name": "factor", "target": "teststages.mapping.factor"},
            {
                "name": "scaled",
                "target": "teststages.mapping.scale",
                "type": "parameterized",
                "depends_on": ["numbers", "factor"],
            },
        ),
        {"n_vals": 4},
        executor=local,
    )
    assert result == [0, 3, 6, 9]


def test_map_on_input_list_with_rest_of_input(local) -> None:
    result = run_workflow(
        wf(
            {
                "name": "greet",
                "target": "teststages.mapping.greet",
                "type": "parameterized",
                "map_on": "payload_cities",
            },
        ),
        {"payload_cities": ["oslo", "lima"], "greeting": "hi", "unrelated": 1},
        executor=local,
    )
    assert result == ["hi oslo!", "hi lima!"]


def test_map_on_in_options_like_flowdapt(local) -> None:
    result = run_workflow(
        wf(
            {
                "name": "rest",
                "target": "teststages.mapping.with_rest",
                "type": "parameterized",
                "options": {"map_on": "xs"},
            },
        ),
        {"xs": [1, 2], "base": 10},
        executor=local,
    )
    assert result == [11, 12]


def test_map_on_with_dependencies_gets_item_then_outputs(local) -> None:
    result = run_workflow(
        wf(
            {"name": "factor", "target": "teststages.mapping.factor"},
            {
                "name": "scaled",
                "target": "teststages.mapping.scale",
                "type": "parameterized",
                "map_on": "xs",
                "depends_on": ["factor"],
            },
        ),
        {"xs": [1, 2, 5]},
        executor=local,
    )
    assert result == [3, 6, 15]


def test_generators_become_lists(local) -> None:
    result = run_workflow(
        wf(
            {"name": "count", "target": "teststages.basic.count_up"},
            {
                "name": "sq",
                "target": "teststages.mapping.squares_gen",
                "type": "parameterized",
                "depends_on": ["count"],
            },
        ),
        {"n_vals": 3},
        executor=local,
    )
    assert result == [[0, 0], [1, 1], [2, 4]]


def test_async_stages_are_awaited(local) -> None:
    result = run_workflow(
        wf(
            {"name": "numbers", "target": "teststages.basic.async_numbers"},
            {
                "name": "doubled",
                "target": "teststages.basic.async_double",
                "type": "parameterized",
                "depends_on": ["numbers"],
            },
        ),
        {"n_vals": 5},
        executor=local,
    )
    assert result == [0, 2, 4, 6, 8]


def test_non_iterable_output_names_both_stages(local) -> None:
    with pytest.raises(
        StageError, match="stage 'each' maps over the output of stage 'single', which is a int"
    ):
        run_workflow(
            wf(
                {"name": "single", "target": "teststages.mapping.not_iterable"},
                {
                    "name": "each",
                    "target": "teststages.mapping.identity",
                    "type": "parameterized",
                    "depends_on": ["single"],
                },
            ),
            executor=local,
        )


def test_failed_item_fails_the_stage_by_default(local) -> None:
    with pytest.raises(StageError) as info:
        run_workflow(
            wf(
                {
                    "name": "m",
                    "target": "teststages.basic.fail_on_two",
                    "type": "parameterized",
                    "map_on": "xs",
                }
            ),
            {"xs": [0, 1, 2, 3]},
            executor=local,
        )
    assert info.value.stage == "m"
    assert info.value.item_index == 2
    assert "bad item 2" in str(info.value)
    assert isinstance(info.value.__cause__, ValueError)


def test_partial_failure_drops_and_records_items(local) -> None:
    run = run_workflow(
        wf(
            {
                "name": "m",
                "target": "teststages.basic.fail_on_two",
                "type": "parameterized",
                "map_on": "xs",
                "allow_partial_failure": True,
                "retries": 1,
                "retry_delay": "1ms",
            }
        ),
        {"xs": [0, 1, 2, 3, 2]},
        executor=local,
        return_run=True,
    )
    assert run.state == "finished"
    assert run.result == [0, 1, 3]
    failed = run.stages["m"].failed_items
    assert [f["index"] for f in failed] == [2, 4]
    assert all(f["error"] == "ValueError: bad item 2" and f["attempts"] == 2 for f in failed)


def test_failed_items_keep_their_tracebacks_up_to_a_limit(local) -> None:
    """Every failed item is listed; the first ITEM_TRACEBACKS keep their traceback (a map
    of many failures neither pays for formatting them all nor stores them all)."""
    from flowstage.core.calls import ITEM_TRACEBACKS

    run = run_workflow(
        wf(
            {
                "name": "m",
                "target": "teststages.basic.fail_on_two",
                "type": "parameterized",
                "map_on": "xs",
                "allow_partial_failure": True,
            }
        ),
        {"xs": [2] * (ITEM_TRACEBACKS + 10) + [1]},
        executor=local,
        return_run=True,
    )
    assert run.state == "finished" and run.result == [1]
    failed = run.stages["m"].failed_items
    assert [f["index"] for f in failed] == list(range(ITEM_TRACEBACKS + 10))
    kept = [f for f in failed if "traceback" in f]
    assert len(kept) == ITEM_TRACEBACKS
    assert all("in fail_on_two" in f["traceback"] for f in kept)
    assert all(f["error"] == "ValueError: bad item 2" for f in failed)


def test_item_context_has_stage_and_index(local) -> None:
    result = run_workflow(
        wf(
            {
                "name": "m",
                "target": "teststages.mapping.item_and_stage",
                "type": "parameterized",
                "map_on": "xs",
            }
        ),
        {"xs": list("abcde")},
        executor=local,
    )
    assert result == [("m", i, x) for i, x in enumerate("abcde")]


def test_large_map_keeps_item_order(local) -> None:
    n = 20_000
    result = run_workflow(
        wf(
            {
                "name": "m",
                "target": "teststages.basic.double",
                "type": "parameterized",
                "map_on": "xs",
            }
        ),
        {"xs": list(range(n))},
        executor=local,
        return_run=True,
    )
    assert result.result == [2 * i for i in range(n)]
    assert result.stages["m"].items_done == n


def test_empty_map(local) -> None:
    assert (
        run_workflow(
            wf(
                {
                    "name": "m",
                    "target": "teststages.basic.double",
                    "type": "parameterized",
                    "map_on": "xs",
                }
            ),
            {"xs": []},
            executor=local,
        )
        == []
    )


def test_progress_of_a_map_fed_by_a_running_map_says_more_items_come(local) -> None:
    """While the upstream map still runs, the consumer's item total is not final."""
    import asyncio
    import threading
    import time

    from flowstage import arun_workflow
    from flowstage.cli.progress import _items

    runs: list = []
    seen: list[str] = []
    workflow = wf(
        {
            "name": "slept",
            "target": "teststages.engines.timed_sleep",
            "type": "parameterized",
            "map_on": "delays",
        },
        {
            "name": "next",
            "target": "teststages.engines.started_after",
            "type": "parameterized",
            "depends_on": ["slept"],
        },
    )

    def run() -> None:
        asyncio.run(
            arun_workflow(
                workflow, {"delays": [0.01, 1.0]}, executor=local, on_run=runs.append, record=False
            )
        )

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 10
    while worker.is_alive() and time.monotonic() < deadline:
        if runs and runs[0].stages["next"].items_done:
            seen.append(_items(runs[0].stages["next"]))
        time.sleep(0.02)
    worker.join()
    assert "1/1+ items" in seen, seen
    assert _items(runs[0].stages["next"]) == "2/2 items"


def test_map_records_its_batches_from_the_stage_start(local) -> None:
    n = 20_000
    run = run_workflow(
        wf(
            {
                "name": "m",
                "target": "teststages.basic.double",
                "type": "parameterized",
                "map_on": "xs",
            }
        ),
        {"xs": list(range(n))},
        executor=local,
        return_run=True,
        record=False,
    )
    record = run.stages["m"]
    assert record.batches and record.batches_left_out == 0
    assert record.duration is not None
    covered: list[int] = []
    for offset, seconds, first, count in record.batches:
        assert offset >= 0 and seconds >= 0 and count >= 1
        assert offset + seconds <= record.duration + 0.01  # the driver's clock vs now()
        covered.extend(range(first, first + count))
    assert sorted(covered) == list(range(n))  # every item in exactly one batch
    stored = json.loads(stages_json(run))["m"]
    assert [b[2:] for b in stored["batches"]] == [[b[2], b[3]] for b in record.batches]
    assert "batches_left_out" not in stored


def test_batch_timings_are_capped_and_spread_over_the_map() -> None:
    record = StageRecord("m")
    for index in range(2 * MAX_BATCHES + 123):
        record.add_batch(index * 0.001, 0.001, index, 1)
    kept = [first for _, _, first, _ in record.batches]
    assert MAX_BATCHES // 2 <= len(kept) <= MAX_BATCHES
    assert len(kept) + record.batches_left_out == 2 * MAX_BATCHES + 123
    assert kept == sorted(kept) and kept[0] == 0
    assert kept[-1] >= 2 * MAX_BATCHES  # the sample reaches the end, not just the start


def test_a_map_of_many_batches_keeps_at_most_the_cap() -> None:
    n = MAX_BATCHES + 300
    with create_executor({"name": "local", "max_workers": 2}) as threads:
        threads.batch_seconds = 0.0  # one item per batch
        run = run_workflow(
            wf(
                {
                    "name": "m",
                    "target": "teststages.basic.double",
                    "type": "parameterized",
                    "map_on": "xs",
                }
            ),
            {"xs": list(range(n))},
            executor=threads,
            return_run=True,
            record=False,
        )
    record = run.stages["m"]
    assert run.result == [2 * i for i in range(n)]
    assert len(record.batches) <= MAX_BATCHES
    assert len(record.batches) + record.batches_left_out == n
    assert json.loads(stages_json(run))["m"]["batches_left_out"] == record.batches_left_out
