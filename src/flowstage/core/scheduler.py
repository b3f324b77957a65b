"""The dataflow scheduler: a stage starts the moment its dependencies have finished.

There is no level-by-level barrier. On engines that chain handles, a simple stage's
dependents are submitted along with it and the engine starts them when it is done, so a
chain of stages makes no round trip through the driver. Every stage runs (several terminal
stages give ``{name: output}``). The first failure cancels what has not started and raises a
:class:`~flowstage.core.errors.StageError`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flowstage.core import retries
from flowstage.core.cache_calls import CachedCalls
from flowstage.core.calls import CallFailure, StageTask, run_call
from flowstage.core.dag import StageGraph
from flowstage.core.errors import CallTimeout, StageError
from flowstage.core.mapping import MapStream, run_map
from flowstage.core.runs import DONE_STAGE_STATES, now, reused_note

if TYPE_CHECKING:
    from flowstage.core.caching import RunCache, StageCache
    from flowstage.core.context import RunContext
    from flowstage.core.executor import Executor
    from flowstage.core.models import Stage, Workflow
    from flowstage.core.plugin_manager import FlowstagePlugins
    from flowstage.core.registry import Registry
    from flowstage.core.runs import Run, StageRecord


class StageExecution:
    """What a stage type uses to run one stage: its inputs, and calls on the executor."""

    def __init__(self, driver: RunDriver, stage: Stage, dependencies: list[Any]) -> None:
        self.driver = driver
        self.stage = stage
        #: outputs of ``depends_on`` stages, in order (values or executor handles)
        self.dependencies = dependencies
        #: the root stage's keyword arguments from the run input, coerced
        self.bound_input: dict[str, Any] = driver.bound_inputs.get(stage.name, {})
        self.input = driver.context.input
        self.record: StageRecord = driver.run.stages[stage.name]
        self.executor: Executor = driver.executor
        #: item outputs a retry reuses instead of calling the target on those items
        self.known_items: dict[int, Any] | None = driver.reuse_items.get(stage.name)
        #: the outputs of the items that finished, set when the map fails
        self.finished_items: dict[int, Any] = {}
        #: the stage's cache (None: not cached in this run)
        self.cache: StageCache | None = driver.stage_cache(stage)
        self.cache_calls = CachedCalls(self, self.cache)
        #: a single call: retries and timeout are applied here in the driver
        self.call_task = StageTask(
            stage.name,
            stage.target,
            driver.search_paths,
            driver.context,
            allow_partial_failure=stage.allow_partial_failure,
        )

    @property
    def map_task(self) -> StageTask:
        """The task of map items: retries and timeout are applied per item in the worker."""
        stage = self.stage
        return dataclasses.replace(
            self.call_task,
            retries=stage.retries,
            retry_delay=stage.retry_delay,
            timeout=stage.timeout,
        )

    @property
    def is_root(self) -> bool:
        return not self.stage.depends_on

    def track(self, handle: Any) -> None:
        self.driver.in_flight.add(handle)

    def untrack(self, handle: Any) -> None:
        self.driver.in_flight.discard(handle)

    async def fetch(self, value: Any) -> Any:
        """``value`` in the driver (fetched from the engine if it is a handle)."""
        return await self.driver.fetch(value)

    async def call(self, *args: Any, **kwargs: Any) -> Any:
        """Call the target once (with the stage's retries and timeout); its output handle
        (or the stored output, when the stage is cached and the cache has it).

        :raises CallFailure: every attempt failed
        """
        return await self.cache_calls.call(self._call, args, kwargs)

    async def _call(self, *args: Any, **kwargs: Any) -> Any:
        stage = self.stage
        for attempt, pause in retries.attempts(stage.retries, stage.retry_delay):
            self.record.attempts = attempt
            handle = await self.executor.submit(
                run_call, self.call_task, kwargs, *args, resources=stage.resources, label=stage.name
            )
            self.track(handle)
            try:
                if stage.timeout is None:
                    await self.executor.wait(handle)
                else:
                    # counted from the call's start: not the wait for a free worker
                    await self.executor.call_started(handle)
                    await asyncio.wait_for(self.executor.wait(handle), stage.timeout)
                return handle
            except asyncio.TimeoutError:
                self.executor.cancel([handle])
                msg = f"the call did not finish within its timeout of {stage.timeout:g}s"
                failure = CallFailure(stage.name, None, attempt, "", CallTimeout(msg))
            except CallFailure as exc:
                if exc.stage != stage.name:
                    # a stage it depends on failed (its value could not arrive): not retried here
                    raise
                failure = exc
            finally:
                self.untrack(handle)
            if pause is None:
                failure.attempts = attempt
                raise failure
            await asyncio.sleep(pause)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def call_output(self, *args: Any, **kwargs: Any) -> Any:
        """:meth:`call`, for a call whose result is the stage's output.

        On engines that chain handles (``Executor.pipelines``), dependents are submitted
        as soon as this call is, and the engine starts them when it finishes: no round
        trip through the driver between stages. Calls with retries or a timeout are
        watched by the driver, so they are not pipelined.
        """
        return await self.cache_calls.call(self._call_output, args, kwargs)

    async def _call_output(self, *args: Any, **kwargs: Any) -> Any:
        stage = self.stage
        if not (self.executor.pipelines and stage.retries == 0 and stage.timeout is None):
            return await self._call(*args, **kwargs)
        self.record.attempts = 1
        handle = await self.executor.submit(
            run_call, self.call_task, kwargs, *args, resources=stage.resources, label=stage.name
        )
        self.track(handle)
        self.driver.output_ready(stage.name, handle)
        try:
            if self.driver.graph.dependents[stage.name]:
                await self.executor.watch(handle)
            else:
                await self.executor.wait(handle)
        finally:
            self.untrack(handle)
        return handle

    async def map(self, items: Any, *extra_args: Any, **extra_kwargs: Any) -> list[Any]:
        """Map the target over ``items`` (a sequence, or a running map's
        :class:`MapStream`), in batches; outputs in item order. Items the cache has
        are not called."""
        items = await self.cache_calls.ask(items, extra_args, extra_kwargs)
        return await run_map(self, items, extra_args, extra_kwargs)

    async def map_output(self, items: Any, *extra_args: Any, **extra_kwargs: Any) -> list[Any]:
        """:meth:`map`, for a map whose outputs are the stage's output: when every
        dependent maps over them as they come, they get them as a stream at once and
        start on the first finished batches."""
        items = await self.cache_calls.ask(items, extra_args, extra_kwargs)
        return await run_map(
            self, items, extra_args, extra_kwargs, stream=self.driver.open_stream(self.stage)
        )

    def returned(self, start: int, values: list[Any], failed: set[int]) -> None:
        """A batch of map items came back: the cache stores the items that did not fail."""
        self.cache_calls.returned(start, values, failed)


class RunDriver:
    """Runs one workflow's stages on an executor, updating the run record as it goes."""

    def __init__(
        self,
        workflow: Workflow,
        run: Run,
        context: RunContext,
        executor: Executor,
        plugins: FlowstagePlugins,
        stage_types: Registry[Any],
        bound_inputs: dict[str, dict[str, Any]],
        search_paths: tuple[str, ...],
        *,
        reuse: Mapping[str, Any] | None = None,
        reuse_items: Mapping[str, dict[int, Any]] | None = None,
        reused_from: str | None = None,
        keep_outputs: bool = False,
        cache: RunCache | None = None,
    ) -> None:
        """:param reuse: outputs of stages that are not called (a retry's finished stages)
        :param reuse_items: item outputs of maps whose other items are the only ones called
        :param reused_from: the run the reused outputs come from (noted on their stages)
        :param keep_outputs: keep finished stages' outputs on ``run.outputs`` also when
            the run succeeds (a failed or cancelled run always keeps them)
        :param cache: the stage cache (None: no stage is cached)
        """
        self.workflow = workflow
        self.run = run
        self.context = context
        self.executor = executor
        self.plugins = plugins
        self.stage_types = stage_types
        self.bound_inputs = bound_inputs
        self.search_paths = search_paths
        self.reuse = dict(reuse or {})
        self.reuse_items = dict(reuse_items or {})
        self.reused_from = reused_from
        self.keep_outputs = keep_outputs
        self.cache = cache
        self.stages = {s.name: s for s in workflow.spec.stages}
        self.graph = StageGraph({s.name: s.depends_on for s in workflow.spec.stages})
        self.in_flight: set[Any] = set()
        self._notify_stages = plugins.has_impls("flowstage_stage_started") or plugins.has_impls(
            "flowstage_stage_finished"
        )

    def stage_cache(self, stage: Stage) -> StageCache | None:
        """``stage``'s cache in this run, or None.

        :raises CacheKeyError: the run config cannot enter the key
        """
        return None if self.cache is None else self.cache.for_stage(stage)

    def caches(self, stage: Stage) -> bool:
        """Whether ``stage`` is cached in this run."""
        return self.cache is not None and self.cache.mode != "off" and stage.cache is not None

    async def execute(self) -> Any:
        """Run every stage; the terminal output (or ``{name: output}`` for several).

        :raises StageError: a stage failed; stages not yet started are cancelled
        """
        if self.executor.shares_context:
            self.context.ship_with(self.executor.share)
        self._outputs: dict[str, Any] = {}
        self._waiting = {name: len(set(deps)) for name, deps in self.graph.dependencies.items()}
        self._done: asyncio.Queue[tuple[str, asyncio.Task[Any]]] = asyncio.Queue()
        self._running: dict[str, asyncio.Task[Any]] = {}
        remaining = len(self.stages) - self._reuse_ready()
        for name in self.graph.roots if not self.reuse else self.graph.topological_order():
            if name not in self._outputs and self._waiting[name] == 0:
                self._start(name)
        try:
            while remaining:
                name, task = await self._done.get()
                remaining -= 1
                del self._running[name]
                self.output_ready(name, task.result())  # raises the stage's StageError
        except BaseException:
            await self._cancel(self._running)
            await self._keep()
            raise
        terminals = self.graph.terminals
        fetched = {name: await self._fetch_output(name) for name in terminals}
        if self.keep_outputs:
            await self._keep()
        return fetched[terminals[0]] if len(terminals) == 1 else fetched

    def _reuse_ready(self) -> int:
        """Mark the reused stages whose dependencies are all reused finished at once, with
        no task each (a retry of a long chain costs about its new stages); how many."""
        count = 0
        at, note = now(), reused_note(str(self.reused_from))
        for name in self.graph.topological_order() if self.reuse else ():
            deps = self.stages[name].depends_on
            if name not in self.reuse or not all(d in self._outputs for d in deps):
                continue
            record = self.run.stages[name]
            record.started_at = record.finished_at = at
            record.state, record.note = "finished", note
            if self._notify_stages:
                self.plugins.notify("flowstage_stage_started", run=self.run, stage=record)
                self.plugins.notify("flowstage_stage_finished", run=self.run, stage=record)
            self._outputs[name] = self.reuse[name]
            for user in self.graph.dependents[name]:
                self._waiting[user] -= 1
            count += 1
        return count

    async def _keep(self) -> None:
        """The finished stages' outputs, fetched onto ``run.outputs`` for a retry; an
        output the engine cannot give any more is left out (the retry runs its stage)."""
        kept: dict[str, Any] = {}
        for name, record in self.run.stages.items():
            if record.state not in DONE_STAGE_STATES or name not in self._outputs:
                continue
            try:
                kept[name] = await self.fetch(self._outputs[name])
            except (Exception, asyncio.CancelledError):  # noqa: BLE001 - kept at best effort
                continue
        self.run.outputs = kept

    async def _fetch_output(self, name: str) -> Any:
        """A terminal stage's output in the driver; the stage fails if it cannot get here
        (an engine that serializes results only to move them finds out only now)."""
        try:
            return await self.fetch(self._outputs[name])
        except CallFailure as exc:
            error = as_stage_error(name, exc, self.run.stages[name].attempts)
            record = self.run.stages.get(error.stage, self.run.stages[name])
            record.state, record.error = "failed", str(error)
            raise error from exc.cause

    def _start(self, name: str) -> None:
        deps = [self._outputs[d] for d in self.stages[name].depends_on]
        task = asyncio.ensure_future(self._run_stage(self.stages[name], deps))
        task.add_done_callback(functools.partial(self._stage_done, name))
        self._running[name] = task

    def _stage_done(self, name: str, task: asyncio.Task[Any]) -> None:
        self._done.put_nowait((name, task))

    def output_ready(self, name: str, output: Any) -> None:
        """``name``'s output (value or handle) is known: start dependents that now can.

        Called when a stage finishes, or earlier, when its output is a handle the engine
        chains by itself (then dependents are submitted while it still runs).
        """
        if name in self._outputs:
            return
        self._outputs[name] = output
        for user in self.graph.dependents[name]:
            self._waiting[user] -= 1
            if self._waiting[user] == 0:
                self._start(user)

    async def fetch(self, value: Any) -> Any:
        """``value`` in the driver (fetched from the engine if it is a handle)."""
        if isinstance(value, MapStream):
            return await value.result()
        return await self.executor.result(value) if self.executor.is_handle(value) else value

    def open_stream(self, stage: Stage) -> MapStream | None:
        """A stream of ``stage``'s map outputs, handed to its dependents at once, if every
        dependent takes it (it maps over this stage as its first dependency) and item
        positions are final (no partial failure)."""
        users = [self.stages[name] for name in self.graph.dependents[stage.name]]
        if (
            stage.allow_partial_failure
            or not users
            or not all(
                user.depends_on[0] == stage.name
                and user.depends_on.count(stage.name) == 1
                and self.stage_types.get(user.type).consumes_stream(user)
                for user in users
            )
        ):
            return None
        stream = MapStream()
        self.output_ready(stage.name, stream)
        return stream

    async def _cancel(self, running: dict[str, asyncio.Task[Any]]) -> None:
        for task in running.values():
            task.cancel()
        self.executor.cancel(list(self.in_flight))
        if running:
            await asyncio.gather(*running.values(), return_exceptions=True)
        for record in self.run.stages.values():
            if record.state in ("pending", "running"):
                record.state = "cancelled"

    def _keep_items(self, execution: StageExecution | None) -> None:
        """A map that did not finish keeps its finished items' outputs for a retry."""
        if execution is not None and execution.finished_items:
            self.run.item_outputs[execution.stage.name] = execution.finished_items

    async def _run_stage(self, stage: Stage, dependencies: list[Any]) -> Any:
        record = self.run.stages[stage.name]
        record.state = "running"
        record.started_at = now()
        if self._notify_stages:
            self.plugins.notify("flowstage_stage_started", run=self.run, stage=record)
        execution: StageExecution | None = None
        try:
            if stage.name in self.reuse:
                record.state = "finished"
                record.note = reused_note(str(self.reused_from))
                return self.reuse[stage.name]
            stage_type = self.stage_types.get(stage.type)
            # a map reusing some items (a retry's, the cache's) places them by index: it
            # needs its whole input
            streamed = (
                stage_type.consumes_stream(stage)
                and stage.name not in self.reuse_items
                and not self.caches(stage)
            )
            dependencies = [
                await dep.result() if isinstance(dep, MapStream) and (i or not streamed) else dep
                for i, dep in enumerate(dependencies)
            ]
            execution = StageExecution(self, stage, dependencies)
            output = await stage_type.execute(execution)
            cache = execution.cache
            record.state = "cached" if cache is not None and cache.all_hit else "finished"
            if cache is not None and cache.note:
                record.note = cache.note
            return output
        except asyncio.CancelledError:
            self._keep_items(execution)
            # a dependent may have reported this stage's failure while it was awaited
            if record.state != "failed":  # type: ignore[comparison-overlap]
                record.state = "cancelled"
            raise
        except BaseException as exc:  # noqa: BLE001 - every way a stage ends is recorded on it
            self._keep_items(execution)
            error = as_stage_error(stage.name, exc, record.attempts)
            if error.stage != stage.name and error.stage in self.run.stages:
                # A dependency submitted ahead (pipelined) failed: the failure is its own.
                record.state = "cancelled"
                upstream = self.run.stages[error.stage]
                upstream.state, upstream.error = "failed", str(error)
            else:
                record.state = "failed"
                record.error = str(error)
            raise error from (error.__cause__ or exc)
        finally:
            record.finished_at = now()
            if self._notify_stages:
                self.plugins.notify("flowstage_stage_finished", run=self.run, stage=record)


def as_stage_error(stage: str, exc: BaseException, attempts: int) -> StageError:
    """The :class:`StageError` a failure inside ``stage`` is reported as."""
    if isinstance(exc, StageError):
        return exc
    if isinstance(exc, CallFailure):
        where = f" on item {exc.item_index}" if exc.item_index is not None else ""
        tries = f" after {exc.attempts} attempts" if exc.attempts > 1 else ""
        cause = exc.cause
        msg = f"stage {exc.stage!r} failed{where}{tries}: {type(cause).__name__}: {cause}"
        error = StageError(
            msg,
            stage=exc.stage,
            item_index=exc.item_index,
            attempts=exc.attempts,
            traceback=exc.traceback,
        )
        error.__cause__ = cause
        return error
    import traceback

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    error = StageError(
        f"stage {stage!r} failed: {exc}"
        if str(exc)
        else f"stage {stage!r} failed: {type(exc).__name__}",
        stage=stage,
        attempts=max(1, attempts),
        traceback=text,
    )
    error.__cause__ = exc
    return error
