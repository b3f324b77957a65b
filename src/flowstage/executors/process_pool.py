"""The local executor's pool of worker processes, in which one running call can be stopped.

``concurrent.futures.ProcessPoolExecutor`` cannot stop a running call, and a worker
killed under it breaks the whole pool. Here each worker process is served by a thread of
the driver that sends it one call at a time, so the pool knows which process runs which
call: :meth:`ProcessPool.cancel` kills that process (its call cannot overlap a retry
submitted afterwards) and the thread starts a replacement, while the other workers go on.

Workers die with the driver, also when it is killed (SIGKILL leaves no time to clean
up): on Linux through ``PR_SET_PDEATHSIG``, elsewhere (and as a fallback) a thread in the
worker exits it once its parent process is gone.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import ctypes
import multiprocessing
import multiprocessing.util  # its exit hook must be registered before ours (see below)
import os
import pickle
import queue
import signal
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, cast

from flowstage.core.calls import abandoned_calls_running
from flowstage.core.errors import CallStopped, ResultNotTransferable, WorkerLost
from flowstage.executors.common import main_module_hidden
from flowstage.executors.starts import StartNotices

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

#: ``main_module_hidden`` swaps ``sys.modules["__main__"]``: one spawn at a time
_SPAWN_LOCK = threading.Lock()
#: Linux prctl option: the signal a process gets when the thread that started it ends
_PR_SET_PDEATHSIG = 1
_POOLS: weakref.WeakSet[ProcessPool] = weakref.WeakSet()
#: a new worker's first message: it has started up and waits for calls
_READY = b"ready"


class Pickled:
    """A value already pickled by a worker, passed on to the next worker as bytes."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def run_pickled(payload: bytes) -> bytes:
    """Worker entry of one call: unpickle it, run it, pickle its result."""
    # lazy: cloudpickle is needed only for what plain pickle refuses
    import cloudpickle

    fn, args = cloudpickle.loads(payload)
    args = [pickle.loads(a.data) if isinstance(a, Pickled) else a for a in args]
    result = fn(*args)
    try:
        return cast(bytes, cloudpickle.dumps(result))
    except Exception as exc:  # noqa: BLE001 - any pickling error means the same to the user
        msg = (
            f"its result ({type(result).__name__}) cannot be sent between processes: "
            f"{type(exc).__name__}: {exc}"
        )
        raise ResultNotTransferable(msg) from None


def _dump_exception(exc: BaseException) -> bytes:
    # lazy: cloudpickle is needed only for what plain pickle refuses
    import cloudpickle

    try:
        data: bytes = cloudpickle.dumps(exc)
        pickle.loads(data)
        return data
    except Exception:  # noqa: BLE001 - an exception that cannot travel goes as its text
        return cast(bytes, cloudpickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}")))


def _die_with_parent(parent: int) -> None:
    """End this worker when process ``parent`` ends, however it ends."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watchdog below still ends it, within a second
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="flowstage-parent-watch").start()


def _serve_calls(conn: Connection, parent: int) -> None:
    """A worker process: run the calls that arrive on ``conn``, one at a time.

    A map item that timed out leaves its thread running in the worker (threads cannot
    be killed); the worker then retires after answering, and the pool replaces it.
    """
    _die_with_parent(parent)
    conn.send_bytes(_READY)  # the pool hands it calls (and starts their clocks) from now
    while True:
        try:
            payload = conn.recv_bytes()
        except EOFError:
            return
        try:
            reply = (True, run_pickled(payload))
        except BaseException as exc:  # noqa: BLE001 - handed to the driver
            reply = (False, _dump_exception(exc))
        retire = abandoned_calls_running()
        conn.send_bytes(pickle.dumps((*reply, retire)))
        if retire:
            os._exit(0)  # not a normal exit: that would wait for the abandoned threads


class _Slot:
    """One worker process of the pool and the driver thread that serves it."""

    def __init__(self) -> None:
        self.process: BaseProcess | None = None
        self.stopping = False
        self.reaped = threading.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None


class ProcessPool:
    """``max_workers`` spawned worker processes; :meth:`cancel` stops a running call."""

    def __init__(self, max_workers: int) -> None:
        self.max_workers = max_workers
        self._context = multiprocessing.get_context("spawn")
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._running: dict[concurrent.futures.Future[Any], _Slot] = {}
        self._slots = [_Slot() for _ in range(max_workers)]
        self._closed = False
        #: told when a call is handed to a worker (stage timeouts count from then)
        self.starts = StartNotices()
        self._threads = [
            threading.Thread(
                target=self._serve, args=(slot,), daemon=True, name=f"flowstage-process-{i}"
            )
            for i, slot in enumerate(self._slots)
        ]

    def start(self) -> None:
        """Start every worker, and return when all are up."""
        _POOLS.add(self)
        for thread in self._threads:
            thread.start()
        for slot in self._slots:
            slot.ready.wait()
            if slot.error is not None:
                self.shutdown()
                raise slot.error

    def submit(self, payload: bytes) -> concurrent.futures.Future[Any]:
        """Run the call pickled in ``payload`` (see :func:`run_pickled`); its future
        gives the pickled result."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put((future, payload))
        return future

    def cancel(self, future: concurrent.futures.Future[Any]) -> None:
        """Cancel ``future`` if it has not started; else kill its worker process and
        return once that process is dead (a replacement starts in its place)."""
        with self._lock:  # held so that its worker cannot move on to another call
            slot = self._running.pop(future, None)
            if slot is None or slot.process is None:
                future.cancel()
                return
            slot.stopping = True
            slot.reaped.clear()
            slot.process.kill()
        slot.reaped.wait(10)

    def shutdown(self) -> None:
        """Kill every worker (calls still running are stopped) and cancel queued calls."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            processes = [slot.process for slot in self._slots if slot.process is not None]
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        for _ in self._threads:
            self._queue.put(None)
        for process in processes:
            process.kill()
        for thread in self._threads:
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join(10)

    def _spawn(self) -> tuple[BaseProcess, Connection]:
        ours, theirs = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_serve_calls, args=(theirs, os.getpid()), name="flowstage-worker"
        )
        # Started from the thread that serves it, which lives as long as the process:
        # PR_SET_PDEATHSIG fires when the starting *thread* ends. The main module is
        # hidden, or spawned workers would re-run the user's script
        # (calls arrive by value, via cloudpickle).
        with _SPAWN_LOCK, main_module_hidden():
            process.start()
        theirs.close()
        try:
            ours.recv_bytes()  # its _READY; EOFError if it died while starting up
        except BaseException:
            process.kill()
            process.join()
            ours.close()
            raise
        return process, ours

    def _serve(self, slot: _Slot) -> None:
        process: BaseProcess | None = None
        conn: Connection | None = None
        try:
            while not self._closed:
                if process is None:
                    try:
                        process, conn = self._spawn()
                    except BaseException as exc:  # noqa: BLE001 - reported by start()
                        slot.error = exc
                        return
                    finally:
                        slot.ready.set()
                    with self._lock:
                        slot.process, slot.stopping = process, False
                        # close() may have run in another thread while this one spawned
                        # (mypy narrows the attribute from the loop's condition)
                        if self._closed:
                            return  # type: ignore[unreachable]
                assert conn is not None
                item = self._queue.get()
                if item is None:
                    return
                future, payload = item
                with self._lock:
                    if not future.set_running_or_notify_cancel():
                        continue
                    self._running[future] = slot
                self.starts.fire(future)
                try:
                    conn.send_bytes(payload)
                    reply: tuple[bool, bytes, bool] | None = pickle.loads(conn.recv_bytes())
                except (EOFError, OSError):
                    reply = None
                with self._lock:
                    self._running.pop(future, None)
                    stopped = slot.stopping
                if reply is not None:
                    ok, data, retire = reply
                    if ok:
                        future.set_result(data)
                    else:
                        future.set_exception(pickle.loads(data))
                if reply is None or retire or stopped:
                    process.join()
                    conn.close()
                    if reply is None:
                        future.set_exception(
                            CallStopped("the call was cancelled: its worker process was killed")
                            if stopped
                            else WorkerLost(
                                f"its worker process (pid {process.pid}) died while running "
                                f"it (exit code {process.exitcode})"
                            )
                        )
                    process = conn = None
                    slot.reaped.set()
        finally:
            if process is not None:
                process.kill()
                process.join()
            if conn is not None:
                conn.close()
            slot.reaped.set()


@atexit.register
def _shutdown_pools() -> None:
    # Registered after multiprocessing's own exit hook, so it runs first: that hook
    # joins non-daemon children, which would wait for workers that were never closed.
    for pool in list(_POOLS):
        pool.shutdown()
