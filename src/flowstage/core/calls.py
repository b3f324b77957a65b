"""What runs inside a worker: one stage call, or a batch of map items.

These functions are what every executor ships to its workers, so they depend on nothing
but the task they are given. Retries (with doubling delay), timeouts, async targets,
generators and the run context are handled here, identically on every engine.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
import traceback
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flowstage.core import retries
from flowstage.core.context import RunContext, reset_run_context, set_run_context, stage_target
from flowstage.core.errors import CallTimeout
from flowstage.core.sources import resolve_in
from flowstage.core.targets import resolve_target, signature_of


@dataclass
class StageTask:
    """Everything a worker needs to call one stage's target."""

    stage: str
    target: str | Callable[..., Any]
    search_paths: tuple[str, ...]
    context: RunContext
    retries: int = 0
    retry_delay: float = 1.0
    timeout: float | None = None
    allow_partial_failure: bool = False

    def __reduce__(self) -> tuple[Any, ...]:
        # A function target travels once per run, inside the run context's workflow (a
        # function of a script is pickled by value, costing more than a small call):
        # each task names its stage instead, and the worker takes the target from there.
        state = dict(self.__dict__)
        if not isinstance(self.target, str) and self.context.sent_target(self.stage) is self.target:
            state["target"] = _IN_DEFINITION
        return (_restore_task, (type(self), state))

    def pickles_plainly(self) -> bool:
        """Whether the standard pickler sends this task as well as cloudpickle would:
        nothing in it travels by value (its target is a name, or travels with the run
        context) and its context travels inside it (not shared apart)."""
        return (
            type(self) is StageTask
            and type(self.context) is RunContext
            and self.context.pickles_plainly()
            and (
                isinstance(self.target, str) or self.context.sent_target(self.stage) is self.target
            )
        )


#: a pickled StageTask's target, when it is the stage's target in the run's workflow
_IN_DEFINITION = ":in-definition:"


def _restore_task(cls: type[StageTask], state: dict[str, Any]) -> StageTask:
    task = cls.__new__(cls)
    task.__dict__.update(state)
    return task


class CallFailure(Exception):
    """A stage call failed in a worker (after all its attempts).

    Crosses process boundaries intact; the driver turns it into a ``StageError``.
    """

    def __init__(
        self, stage: str, item_index: int | None, attempts: int, tb: str, cause: BaseException
    ) -> None:
        super().__init__(stage, item_index, attempts, tb, cause)
        self.stage = stage
        self.item_index = item_index
        self.attempts = attempts
        self.traceback = tb
        self.cause = cause

    def __str__(self) -> str:
        return f"{type(self.cause).__name__}: {self.cause}"


_SPECIAL_RESULTS = (types.GeneratorType, types.CoroutineType)


def _finish(value: Any) -> Any:
    """Generators become lists (so they cross processes); awaitables are awaited."""
    if isinstance(value, types.GeneratorType):
        return list(value)
    if isinstance(value, types.CoroutineType):
        return _finish(asyncio.run(value))
    return value


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a RuntimeError that carries its text."""
    import pickle

    import cloudpickle

    try:
        pickle.loads(cloudpickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - an exception that cannot be pickled travels as its text
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def call_failure(
    stage: str, exc: BaseException, index: int | None = None, attempts: int = 1
) -> CallFailure:
    """The :class:`CallFailure` of ``stage`` (map item ``index``) that ``exc`` ended,
    with its traceback, ready to cross to the driver."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return CallFailure(stage, index, attempts, tb, _portable(exc))


#: threads of timed-out calls, which run on in this process (see :func:`_with_timeout`)
_abandoned: set[threading.Thread] = set()


def abandoned_calls_running() -> bool:
    """Whether a timed-out call of this process still runs in its abandoned thread (a
    worker process may then retire, so that the call stops with it)."""
    for thread in [t for t in _abandoned if not t.is_alive()]:
        _abandoned.discard(thread)
    return bool(_abandoned)


def _with_timeout(
    fn: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any], timeout: float
) -> Any:
    """Call ``fn`` in a daemon thread; give up on it after ``timeout`` seconds.

    A thread cannot be killed: a timed-out call is abandoned, and being a daemon it
    never holds up the process's exit. It is remembered (:func:`abandoned_calls_running`):
    a worker of the local process pool then ends after its current batch, stopping it.
    """
    outcome: list[tuple[bool, Any]] = []

    def call() -> None:
        try:
            outcome.append((True, _finish(fn(*args, **kwargs))))
        except BaseException as exc:  # noqa: BLE001 - handed back to the calling thread
            outcome.append((False, exc))

    thread = threading.Thread(target=contextvars.copy_context().run, args=(call,), daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        _abandoned.add(thread)
        raise CallTimeout(f"the call did not finish within its timeout of {timeout:g}s")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def _attempt_sync(
    task: StageTask,
    fn: Callable[..., Any],
    args: Sequence[Any],
    kwargs: dict[str, Any],
    index: int | None,
) -> tuple[Any, int]:
    """Call with retries; returns ``(value, attempts)`` or raises ``CallFailure``."""
    for attempt, pause in retries.attempts(task.retries, task.retry_delay):
        try:
            if task.timeout is not None:
                return _with_timeout(fn, args, kwargs, task.timeout), attempt
            return _finish(fn(*args, **kwargs)), attempt
        except Exception as exc:  # noqa: BLE001 - whatever the stage raises is its failure
            if pause is None:
                raise call_failure(task.stage, exc, index, attempt) from None
        time.sleep(pause)
    raise AssertionError("unreachable: the last attempt returns or raises")


async def _attempt_async(
    task: StageTask,
    fn: Callable[..., Any],
    args: Sequence[Any],
    kwargs: dict[str, Any],
    index: int | None,
) -> tuple[Any, int]:
    """:func:`_attempt_sync` for an ``async def`` target."""
    for attempt, pause in retries.attempts(task.retries, task.retry_delay):
        try:
            pending = fn(*args, **kwargs)
            if task.timeout is not None:
                try:
                    value = await asyncio.wait_for(pending, task.timeout)
                except asyncio.TimeoutError:
                    msg = f"the call did not finish within its timeout of {task.timeout:g}s"
                    raise CallTimeout(msg) from None
            else:
                value = await pending
            return _finish(value), attempt
        except Exception as exc:  # noqa: BLE001 - whatever the stage raises is its failure
            if pause is None:
                raise call_failure(task.stage, exc, index, attempt) from None
        await asyncio.sleep(pause)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _target(task: StageTask) -> Callable[..., Any]:
    """``task``'s target, imported from the stage code sent with the run if there is
    some (workers on other hosts), else from the driver's folders."""
    target = task.target
    if isinstance(target, str) and target == _IN_DEFINITION:
        target = stage_target(task.context, task.stage)
    sources = task.context.extras.get("sources")
    if sources is not None and isinstance(target, str):
        return resolve_in(sources, target)
    return resolve_target(target, task.search_paths)


def run_call(task: StageTask, kwargs: dict[str, Any], *args: Any) -> Any:
    """Run one call of ``task``'s target and return its value.

    Positional arguments come last so that engines resolve handles among them.

    :raises CallFailure: the call failed on every attempt
    """
    try:
        fn = _target(task)
    except Exception as exc:  # noqa: BLE001 - a target that cannot be loaded fails the stage
        raise call_failure(task.stage, exc) from None
    token = set_run_context(task.context.for_stage(task.stage))
    try:
        if signature_of(fn).is_async:
            return asyncio.run(_attempt_async(task, fn, args, kwargs, None))[0]
        return _attempt_sync(task, fn, args, kwargs, None)[0]
    finally:
        reset_run_context(token)


#: a map item left out by partial failure: ``(index, "Type: message", attempts,
#: traceback)``; the traceback is "" past the first ``ITEM_TRACEBACKS`` of a batch
ItemFailure = tuple[int, str, int, str]
#: tracebacks kept per batch (and per map) of items left out by partial failure
ITEM_TRACEBACKS = 20
#: the characters kept of one item's traceback (its end, where the error is)
ITEM_TRACEBACK_CHARS = 8000
#: a batch's ``(values, failures, max_attempts)``: see :func:`run_batch`
BatchOutcome = tuple[list[Any], list[ItemFailure], int]


def _item_traceback(text: str, failures: list[ItemFailure]) -> str:
    """``text`` cut to its end, or "" once the batch holds enough tracebacks."""
    if len(failures) >= ITEM_TRACEBACKS:
        return ""
    return text[-ITEM_TRACEBACK_CHARS:]


def run_batch(
    task: StageTask,
    start: int,
    items: Sequence[Any],
    extra_kwargs: dict[str, Any],
    *extra_args: Any,
) -> tuple[list[Any], list[ItemFailure], int, float]:
    """Map ``task``'s target over ``items`` (item ``k`` is map position ``start + k``).

    Returns ``(values, failures, max_attempts, seconds)``: with partial failure allowed,
    a failed item leaves ``None`` in ``values`` and an :data:`ItemFailure` in
    ``failures``; otherwise the first failure raises ``CallFailure``.
    """
    began = time.perf_counter()
    try:
        fn = _target(task)
    except Exception as exc:  # noqa: BLE001 - a target that cannot be loaded fails the stage
        raise call_failure(task.stage, exc, start) from None
    context = task.context.for_stage(task.stage, start)
    token = set_run_context(context)
    try:
        if signature_of(fn).is_async:
            result = asyncio.run(_batch_async(task, fn, start, items, extra_args, extra_kwargs))
        elif task.retries or task.timeout is not None:
            result = _batch_careful(task, fn, context, start, items, extra_args, extra_kwargs)
        else:
            result = _batch_fast(task, fn, context, start, items, extra_args, extra_kwargs)
    finally:
        reset_run_context(token)
    return (*result, time.perf_counter() - began)


def _batch_fast(
    task: StageTask,
    fn: Callable[..., Any],
    context: RunContext,
    start: int,
    items: Sequence[Any],
    extra_args: Sequence[Any],
    extra_kwargs: dict[str, Any],
) -> BatchOutcome:
    """The hot loop for items without retries or timeouts: as little per item as possible."""
    values: list[Any] = []
    append = values.append
    failures: list[ItemFailure] = []
    index = start
    for item in items:
        context.item_index = index
        try:
            value = fn(item, *extra_args, **extra_kwargs)
            if isinstance(value, _SPECIAL_RESULTS):
                value = _finish(value)
        except Exception as exc:  # noqa: BLE001 - whatever an item raises is its failure
            if not task.allow_partial_failure:
                raise call_failure(task.stage, exc, index) from None
            text = ""
            if len(failures) < ITEM_TRACEBACKS:  # formatting costs: only the first ones
                text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            failures.append(
                (index, f"{type(exc).__name__}: {exc}", 1, _item_traceback(text, failures))
            )
            value = None
        append(value)
        index += 1
    return values, failures, 1


def _batch_careful(
    task: StageTask,
    fn: Callable[..., Any],
    context: RunContext,
    start: int,
    items: Sequence[Any],
    extra_args: Sequence[Any],
    extra_kwargs: dict[str, Any],
) -> BatchOutcome:
    values: list[Any] = []
    failures: list[ItemFailure] = []
    most = 1
    for offset, item in enumerate(items):
        index = start + offset
        context.item_index = index
        try:
            value, attempts = _attempt_sync(task, fn, (item, *extra_args), extra_kwargs, index)
        except CallFailure as failure:
            if not task.allow_partial_failure:
                raise
            tb = _item_traceback(failure.traceback, failures)
            failures.append((index, str(failure), failure.attempts, tb))
            value, attempts = None, failure.attempts
        most = max(most, attempts)
        values.append(value)
    return values, failures, most


async def _batch_async(
    task: StageTask,
    fn: Callable[..., Any],
    start: int,
    items: Sequence[Any],
    extra_args: Sequence[Any],
    extra_kwargs: dict[str, Any],
) -> BatchOutcome:
    """Async items of one batch run concurrently on one event loop."""

    async def one(index: int, item: Any) -> tuple[Any, int]:
        set_run_context(task.context.for_stage(task.stage, index))
        return await _attempt_async(task, fn, (item, *extra_args), extra_kwargs, index)

    outcomes = await asyncio.gather(
        *(one(start + k, item) for k, item in enumerate(items)), return_exceptions=True
    )
    values: list[Any] = []
    failures: list[ItemFailure] = []
    most = 1
    for outcome in outcomes:
        if isinstance(outcome, CallFailure):
            if not task.allow_partial_failure:
                raise outcome
            assert outcome.item_index is not None  # a map item's failure names its item
            tb = _item_traceback(outcome.traceback, failures)
            failures.append((outcome.item_index, str(outcome), outcome.attempts, tb))
            values.append(None)
            most = max(most, outcome.attempts)
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            values.append(outcome[0])
            most = max(most, outcome[1])
    return values, failures, most
