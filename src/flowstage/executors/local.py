"""The ``local`` executor: a pool of threads (default) or of processes on this machine.

Stage resources are ignored unless the executor is given a capacity
(``resources: {cpus: 2, gpus: 1, my_label: 3}``); then a call starts only when its
request for those names fits in what is free.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import pickle
import queue
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from flowstage.core.executor import Executor, ExecutorOptions
from flowstage.executors.common import parse_capacity
from flowstage.executors.process_pool import Pickled, ProcessPool
from flowstage.executors.starts import StartNotices, wait_started
from flowstage.storage.memory import LocalMemory, SharedDirMemory

if TYPE_CHECKING:
    from flowstage.core.models import Resources, Workflow


class LocalOptions(ExecutorOptions):
    """Options of the ``local`` executor."""

    processes: bool = False
    max_workers: int | None = Field(default=None, ge=1)
    resources: dict[str, float] = Field(default_factory=dict)

    _capacity = field_validator("resources", mode="before")(parse_capacity)


class DaemonThreadPool:
    """A thread pool whose threads never hold up interpreter exit.

    ``concurrent.futures.ThreadPoolExecutor`` joins its threads at exit, so one
    abandoned call (a timeout, Ctrl-C) would hang the process.

    A thread cannot be killed: :meth:`cancel` of a running call *abandons* its thread.
    That thread leaves the pool (it no longer counts against ``max_workers``) and a
    fresh one takes its place, so capacity is restored at once; the abandoned thread
    keeps running until its call returns, then ends.
    """

    def __init__(self, max_workers: int) -> None:
        self.max_workers = max_workers
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._running: dict[concurrent.futures.Future[Any], threading.Thread] = {}
        self._abandoned: set[threading.Thread] = set()
        self._idle = 0
        self._started = 0
        self._lock = threading.Lock()
        #: told when a call starts (the driver's stage timeouts count from then)
        self.starts = StartNotices()

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put((future, fn, args))
        with self._lock:
            # Like ThreadPoolExecutor's idle semaphore: each submission claims an idle
            # thread, or starts a new one while below the limit.
            if self._idle:
                self._idle -= 1
            elif len(self._threads) < self.max_workers:
                self._start_thread()
        return future

    def cancel(self, future: concurrent.futures.Future[Any]) -> None:
        """Cancel ``future`` if it has not started, else abandon its thread (see above)."""
        with self._lock:
            thread = self._running.pop(future, None)
            if thread is None:
                future.cancel()
                return
            self._threads.remove(thread)
            self._abandoned.add(thread)
            self._start_thread()
            self._idle += 1  # the replacement waits for work like a thread that finished

    def _start_thread(self) -> None:
        """Start one more pool thread (with the lock held)."""
        self._started += 1
        thread = threading.Thread(
            target=self._work, daemon=True, name=f"flowstage-worker-{self._started}"
        )
        self._threads.append(thread)
        thread.start()

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args = item
            with self._lock:
                running = future.set_running_or_notify_cancel()
                if running:
                    self._running[future] = me
            if running:
                self.starts.fire(future)
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    future.set_exception(exc)
            with self._lock:
                self._running.pop(future, None)
            del future, fn, args, item
            with self._lock:
                if me in self._abandoned:  # replaced while it ran: end, take no more work
                    self._abandoned.discard(me)
                    return
                self._idle += 1

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put(None)


class Admission:
    """Admission control against a declared capacity; thread-safe, FIFO."""

    def __init__(self, capacity: dict[str, float]) -> None:
        self.capacity = dict(capacity)
        self.free = dict(capacity)
        self._lock = threading.Lock()
        self._waiters: list[
            tuple[dict[str, float], asyncio.Future[None], asyncio.AbstractEventLoop]
        ] = []

    def request_of(self, resources: Resources | None) -> dict[str, float]:
        if resources is None:
            return {}
        return {k: v for k, v in resources.requested().items() if k in self.capacity and v}

    def _fits(self, request: dict[str, float]) -> bool:
        return all(self.free[k] >= v for k, v in request.items())

    async def acquire(self, request: dict[str, float]) -> None:
        if not request:
            return
        loop = asyncio.get_running_loop()
        with self._lock:
            if not self._waiters and self._fits(request):
                for k, v in request.items():
                    self.free[k] -= v
                return
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append((request, waiter, loop))
        try:
            await waiter
        except asyncio.CancelledError:
            with self._lock:
                self._waiters = [w for w in self._waiters if w[1] is not waiter]
                granted = waiter.done() and not waiter.cancelled()
            if granted:
                self.release(request)
            raise

    def release(self, request: dict[str, float]) -> None:
        if not request:
            return
        with self._lock:
            for k, v in request.items():
                self.free[k] += v
            while self._waiters and self._fits(self._waiters[0][0]):
                wanted, waiter, loop = self._waiters.pop(0)
                for k, v in wanted.items():
                    self.free[k] -= v
                loop.call_soon_threadsafe(_grant, waiter)


def _grant(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class LocalExecutor(Executor):
    """Runs calls on a pool of threads, or of processes with ``processes: true``."""

    name = "local"
    Options = LocalOptions
    options: LocalOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._pool: Any = None
        self._memory: Any = None
        self._admission = Admission(self.options.resources)
        self.batch_seconds = 0.05 if self.options.processes else 0.02

    @property
    def parallelism(self) -> int:
        return self.options.max_workers or os.cpu_count() or 1

    def _start(self) -> None:
        if self.options.processes:
            pool = ProcessPool(self.parallelism)
            pool.start()
            self._pool = pool
            self._memory = SharedDirMemory.create()
        else:
            self._pool = DaemonThreadPool(self.parallelism)
            self._memory = LocalMemory.create(self.describe())

    def _close(self) -> None:
        pool, self._pool = self._pool, None
        memory, self._memory = self._memory, None
        if pool is not None:  # stops calls that were abandoned (timeouts, failures) too
            pool.shutdown()
        if memory is not None:  # after the workers, which may still be writing to it
            memory.close()

    def check_resources(self, workflow: Workflow) -> list[str]:
        problems = []
        for stage in workflow.spec.stages:
            for key, wanted in self._admission.request_of(stage.resources).items():
                if wanted > self._admission.capacity[key]:
                    problems.append(
                        f"stage {stage.name!r}: requests {key}={wanted:g} but the local "
                        f"executor's capacity is {key}={self._admission.capacity[key]:g} "
                        "(executor option 'resources')"
                    )
        return problems

    async def submit(
        self,
        fn: Callable[..., Any],
        *args: Any,
        resources: Resources | None = None,
        label: str = "",
    ) -> Any:
        if self._pool is None:
            self.start()
        request = self._admission.request_of(resources)
        await self._admission.acquire(request)
        if self.options.processes:
            # lazy: cloudpickle is needed only for what plain pickle refuses
            import cloudpickle

            values = [
                Pickled(a.result()) if isinstance(a, concurrent.futures.Future) else a for a in args
            ]
            future = self._pool.submit(cloudpickle.dumps((fn, values)))
        else:
            values = [a.result() if isinstance(a, concurrent.futures.Future) else a for a in args]
            future = self._pool.submit(fn, *values)
        if request:
            future.add_done_callback(lambda _f: self._admission.release(request))
        return future

    async def call_started(self, handle: Any) -> None:
        """Return once a pool thread or worker process has taken the call (a worker
        process is up and ready by then, also one spawned to replace a killed one)."""
        pool = self._pool
        if pool is not None:
            await wait_started(pool.starts, handle)

    async def wait(self, handle: Any) -> None:
        await asyncio.wrap_future(handle)

    async def result(self, handle: Any) -> Any:
        value = await asyncio.wrap_future(handle)
        if self.options.processes:
            return pickle.loads(value)
        return value

    def cancel(self, handles: Iterable[Any]) -> None:
        """Cancel calls not started; a running call's thread is abandoned and replaced
        (threads) or its worker process killed and replaced (processes)."""
        pool = self._pool
        for handle in handles:
            if pool is None:
                handle.cancel()
            else:
                pool.cancel(handle)

    def cluster_memory(self) -> dict[str, Any] | None:
        """Threads share a store in this process; worker processes share files in RAM."""
        return None if self._memory is None else self._memory.descriptor()

    def is_handle(self, value: Any) -> bool:
        return isinstance(value, concurrent.futures.Future)

    def describe(self) -> str:
        kind = "processes" if self.options.processes else "threads"
        return f"local ({self.parallelism} {kind})"
