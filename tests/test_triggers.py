"""Trigger rules: Flowdapt's condition tree, condition rules on the events of real runs,
schedules on an injected clock (catch-up, overlap, restarts), one schedule on the real
clock, and a ``kill -9`` of a real ``flowstage serve`` across a slot."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("fastapi", reason="the service needs the 'service' extra")
pytest.importorskip("croniter", reason="schedules need the 'service' extra")

from flowstage.core.events import WORKFLOW_FINISHED, WORKFLOW_STARTED, Event
from flowstage.core.plugin_manager import default_plugins
from flowstage.core.settings import ServiceSettings
from flowstage.service import Service
from flowstage.service.triggers import ManualClock, RuleIndex, evaluate
from flowstage.state import fires
from flowstage.state.resources import apply_documents, trigger_rows
from flowstage.state.store import get_store
from servers import WORKFLOWS, Server

pytestmark = pytest.mark.timeout(180)

FINISHED = WORKFLOW_FINISHED
#: the rule of Flowdapt's plugins' ``triggers/auto_predict.yaml``
AFTER_TRAIN = {
    "and": [
        {"eq": [{"var": "type"}, FINISHED]},
        {"eq": [{"var": "data.workflow"}, "train"]},
    ]
}
#: events collected by :func:`record_event`, a dotted-path action
RECEIVED: list[Event] = []


def record_event(event: Event) -> None:
    RECEIVED.append(event)


def finished(workflow: str, state: str = "finished", **data: Any) -> dict[str, Any]:
    return {"type": FINISHED, "data": {"workflow": workflow, "state": state, **data}}


# -- the rule tree ----------------------------------------------------------------------


def test_the_plugins_rule_matches_only_its_workflow_finishing() -> None:
    assert evaluate(AFTER_TRAIN, finished("train"))
    assert not evaluate(AFTER_TRAIN, finished("predict"))
    started = {"type": WORKFLOW_STARTED, "data": {"workflow": "train"}}
    assert not evaluate(AFTER_TRAIN, started)


def test_every_operator() -> None:
    event = finished("train", "failed", attempts=3, tags={"env": "prod"})
    assert evaluate({"ne": [{"var": "data.state"}, "finished"]}, event)
    assert evaluate({"gt": [{"var": "data.attempts"}, 2]}, event)
    assert evaluate({"ge": [{"var": "data.attempts"}, 3]}, event)
    assert not evaluate({"lt": [{"var": "data.attempts"}, 3]}, event)
    assert evaluate({"le": [{"var": "data.attempts"}, 3]}, event)
    assert evaluate({"eq": [{"var": "data.tags.env"}, "prod"]}, event)
    assert evaluate({"or": [{"eq": [{"var": "data.workflow"}, "x"]}, {"bool": True}]}, event)
    assert evaluate({"not": [{"eq": [{"var": "data.state"}, "finished"]}]}, event)
    assert evaluate({"not": {"bool": {"var": "data.missing"}}}, event)
    # a missing field is None, and None cannot be ordered: false, not an error
    assert not evaluate({"gt": [{"var": "data.nothing.here"}, 1]}, event)


def test_the_index_tests_only_rules_that_can_match() -> None:
    rules = [({"eq": [{"var": "data.workflow"}, f"w{i}"]}, f"rule{i}") for i in range(1000)]
    rules.append((AFTER_TRAIN, "after_train"))
    rules.append(({"eq": [{"var": "data.state"}, "failed"]}, "any_failure"))
    index: RuleIndex[str] = RuleIndex(rules)
    assert len(index.candidates(finished("w7"))) == 1
    assert index.matches(finished("w7")) == ["rule7"]
    assert index.matches(finished("train")) == ["after_train"]
    assert index.matches(finished("w9", "failed")) == ["rule9", "any_failure"]


# -- a real service ---------------------------------------------------------------------


def apply(*documents: dict[str, Any]) -> None:
    apply_documents(list(documents), default_plugins(), origin="test")


def workflows(*names: str) -> None:
    apply(*(yaml.safe_load((WORKFLOWS / f"{n}.yaml").read_text()) for n in names))


def trigger(name: str, rule: Any, action: str, **spec: Any) -> dict[str, Any]:
    kind = "schedule" if isinstance(rule, list) else "condition"
    target, parameters = (
        ("run_workflow", {"workflow": action, **spec.pop("parameters", {})})
        if "." not in action
        else (action, {})
    )
    return {
        "kind": "trigger_rule",
        "metadata": {"name": name},
        "spec": {
            "type": kind,
            "rule": rule,
            "action": {"target": target, "parameters": parameters},
            **spec,
        },
    }


@asynccontextmanager
async def service(clock: ManualClock | None = None) -> AsyncIterator[tuple[Service, list[Any]]]:
    """A started in-process service, and the records of the runs it starts."""
    running = Service(ServiceSettings(), executor={"name": "local", "max_workers": 4}, clock=clock)
    started: list[dict[str, Any]] = []
    running.subscribe(lambda e: started.append(e.data) if e.type == WORKFLOW_STARTED else None)
    await running.start()
    try:
        yield running, started
    finally:
        await running.drain(5.0)
        await running.close()


async def settle(seconds: float = 0.3) -> None:
    """Let the loop run what the clock woke (store writes go through threads)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(0.01)


async def until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    """Let the loop run until ``check()`` holds: a loaded machine takes longer than any
    fixed pause, and a clock advanced too early would fire two slots at once."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the service never got there"
        await asyncio.sleep(0.01)


def test_condition_rules_on_a_real_finished_and_a_real_failed_run() -> None:
    RECEIVED.clear()
    workflows("echo", "fail", "recall")
    on_failure = {
        "and": [
            {"eq": [{"var": "type"}, FINISHED]},
            {"eq": [{"var": "data.workflow"}, "svc_fail"]},
            {"eq": [{"var": "data.state"}, "failed"]},
        ]
    }
    apply(
        trigger("after_failure", on_failure, "svc_echo", parameters={"input": {"value": 7}}),
        trigger(
            "log_echo", {"eq": [{"var": "data.workflow"}, "svc_echo"]}, f"{__name__}.record_event"
        ),
    )

    async def scenario() -> list[dict[str, Any]]:
        async with service() as (running, started):
            failed = running.submit("svc_fail")
            await failed.done.wait()
            await settle(1.0)
            return started

    started = asyncio.run(scenario())
    assert [(r["workflow"], r["source"]) for r in started] == [
        ("svc_fail", "api"),
        ("svc_echo", "trigger"),
    ]
    # the dotted-path action saw the triggered run start and finish, with its result
    assert [(e.type, e.data["state"]) for e in RECEIVED] == [
        (WORKFLOW_STARTED, "running"),
        (FINISHED, "finished"),
    ]
    assert RECEIVED[-1].data["result"] == 7


# -- schedules on an injected clock -----------------------------------------------------


def minute_after(when: datetime, minutes: int = 1) -> datetime:
    return when.replace(second=0, microsecond=0) + timedelta(minutes=minutes)


def seconds_to(clock: ManualClock, when: datetime) -> float:
    return (when - clock.now()).total_seconds()


def triggered(started: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in started if r["source"] == "trigger"]


def test_a_schedule_fires_each_slot_once_and_catches_up_after_downtime() -> None:
    workflows("echo")
    apply(trigger("every_minute", ["* * * * *"], "svc_echo"))
    start = datetime.now(timezone.utc) + timedelta(seconds=1)

    async def scenario() -> None:
        clock = ManualClock(start)
        async with service(clock) as (running, started):
            clock.advance(seconds_to(clock, minute_after(start)) + 0.1)
            await settle()
            clock.advance(60)
            await settle()
            assert len(triggered(started)) == 2
            # each fire's lag is in /metrics (0.1 s late on the clock, each time)
            metrics = running.metrics.render().decode()
            assert "flowstage_trigger_lag_seconds_count 2.0" in metrics
        # five slots pass with no service: on restart the latest one fires, once
        clock = ManualClock(minute_after(start, 7) + timedelta(seconds=5))
        async with service(clock) as (_running, started):
            await settle()
            assert len(triggered(started)) == 1
        async with service(clock) as (_running, started):  # the same time again
            await settle()
            assert triggered(started) == []

    asyncio.run(scenario())
    recorded = fires.fires(get_store(), "every_minute")
    assert [r["outcome"] for r in recorded] == ["caught_up", "fired", "fired"]
    assert recorded[0]["slot"] == fires.slot_key(minute_after(start, 7))
    assert all(r["run_id"] for r in recorded)


@pytest.mark.parametrize(("policy", "expected"), [("none", 0), ("all", 3)])
def test_catch_up_none_and_all_with_a_cap(policy: str, expected: int) -> None:
    workflows("echo")
    past = datetime.now(timezone.utc)
    apply(trigger("every_minute", ["* * * * *"], "svc_echo", catch_up=policy, catch_up_limit=3))

    async def scenario() -> int:
        async with service(ManualClock(minute_after(past, 10) + timedelta(seconds=1))) as (
            _running,
            started,
        ):
            await settle()
            return len(triggered(started))

    assert asyncio.run(scenario()) == expected


@pytest.mark.parametrize(
    ("overlap", "runs", "outcomes"),
    [
        ("skip", 1, ["skipped", "fired"]),
        ("queue", 2, ["fired", "fired"]),
        ("allow", 2, ["fired", "fired"]),
    ],
)
def test_overlap_when_the_previous_run_still_goes(
    overlap: str, runs: int, outcomes: list[str]
) -> None:
    workflows("sleep")
    sleepy = trigger(
        "slow", ["* * * * *"], "svc_sleep", overlap=overlap, parameters={"input": {"seconds": 1}}
    )
    apply(sleepy)
    start = datetime.now(timezone.utc) + timedelta(seconds=1)

    async def scenario() -> list[dict[str, Any]]:
        clock = ManualClock(start)
        async with service(clock) as (_running, started):
            clock.advance(seconds_to(clock, minute_after(start)) + 0.1)
            await until(lambda: len(triggered(started)) == 1)
            clock.advance(60)  # the next slot, while the first run sleeps
            await until(
                lambda: (
                    len(fires.fires(get_store(), "slow")) == 2
                    and (overlap != "allow" or len(triggered(started)) == 2)
                )
            )
            begun = len(triggered(started))
            await settle(1.5)
            assert begun == (2 if overlap == "allow" else 1)
            return triggered(started)

    assert len(asyncio.run(scenario())) == runs
    assert [r["outcome"] for r in fires.fires(get_store(), "slow")] == outcomes


def test_a_disabled_rule_never_fires_and_get_triggers_shows_fires() -> None:
    workflows("echo")
    apply(
        trigger("on", ["*/5 * * * *"], "svc_echo"),
        trigger("off", ["* * * * *"], "svc_echo", enabled=False),
    )
    start = datetime.now(timezone.utc) + timedelta(seconds=1)

    async def scenario() -> None:
        clock = ManualClock(start)
        async with service(clock) as (_running, started):
            clock.advance(seconds_to(clock, minute_after(start, 5)) + 0.1)
            await settle()
            assert {r["workflow"] for r in triggered(started)} <= {"svc_echo"}
            assert len(triggered(started)) == 1

    asyncio.run(scenario())
    rows = {r["name"]: r for r in trigger_rows()}
    assert rows["off"]["enabled"] is False and rows["off"]["next_fire"] is None
    assert rows["off"]["last_fire"] is None
    assert rows["on"]["last_fire"] is not None and rows["on"]["next_fire"] is not None


# -- the real clock -----------------------------------------------------------------------


def test_a_seconds_schedule_fires_on_its_slot_in_real_time() -> None:
    workflows("echo")
    apply(trigger("every_two_seconds", ["* * * * * */2"], "svc_echo"))
    lags: list[float] = []

    async def scenario() -> None:
        async with service() as (running, _started):

            def on_start(event: Event) -> None:
                if event.type == WORKFLOW_STARTED and event.data["source"] == "trigger":
                    now = datetime.now(timezone.utc)
                    lags.append((now - now.replace(microsecond=0)).total_seconds())

            running.subscribe(on_start)
            await asyncio.sleep(4.5)

    asyncio.run(scenario())
    assert len(lags) >= 2
    assert max(lags) < 1.0, lags  # each run started within a second of its even second


# -- kill -9 across a slot ------------------------------------------------------------------


def test_kill_9_across_slots_then_restart_catches_up_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    server = Server(home)
    try:
        server.apply("echo")
        rule = trigger("every_three_seconds", ["* * * * * */3"], "svc_echo")
        assert server.request("POST", "/triggers/", rule)[0] == 200
        monkeypatch.setenv("FLOWSTAGE_HOME", str(home))
        deadline = time.monotonic() + 10
        while not fires.fires(get_store(), "every_three_seconds"):
            assert time.monotonic() < deadline, server.log.read_text()
            time.sleep(0.1)
        server.stop(signal.SIGKILL)
        last = fires.fires(get_store(), "every_three_seconds")[0]["slot"]
        time.sleep(7)  # two slots or more pass with no service
        down_until = fires.slot_key(datetime.now(timezone.utc))
        server = Server(home)
        time.sleep(1.5)
    finally:
        server.stop()
    recorded = fires.fires(get_store(), "every_three_seconds")
    # of the slots missed while down, the latest fired once on restart; then the timer
    after = sorted((r["slot"], r["outcome"]) for r in recorded if r["slot"] > last)
    assert [outcome for _slot, outcome in after].count("caught_up") == 1, recorded
    assert after[0][1] == "caught_up" and after[0][0] >= fires.slot_key(
        datetime.fromisoformat(down_until) - timedelta(seconds=3)
    )
    runs = [r["run_id"] for r in recorded]
    assert all(runs) and len(set(runs)) == len(runs)
    # a run the kill -9 cut short within its first 0.1 s never got a row (the recorder
    # writes it then: docs/operations.md); every run after the restart has one
    for run_id in (r["run_id"] for r in recorded if r["slot"] > last):
        row = get_store().find_run(run_id, prefix=False)
        assert row is not None and row["source"] == "trigger"
