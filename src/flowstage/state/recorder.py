"""The run recorder: keeps every recorded run in the history of the app-dir store.

It is a plugin of flowstage's own, registered through the ``flowstage.plugins`` entry
point like any third party's, and it sees runs only through the lifecycle hooks.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING

from flowstage.core.plugin_manager import hookimpl
from flowstage.state.liveness import own_start
from flowstage.state.store import get_store

if TYPE_CHECKING:
    from flowstage.core.runs import Run

log = logging.getLogger("flowstage.store")

#: a run is written when it ends; one still going after this many seconds gets its row
#: at once, so that ``runs`` shows it and a crash leaves a trace (short runs, the common
#: case in loops, cost one write instead of two)
START_DELAY = 0.1


class RunRecorder:
    """Keeps one run in the history: its row once it has run for :data:`START_DELAY`,
    its progress and heartbeat while it runs (both written by the monitor thread), and
    its outcome, written before the run returns."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.store = get_store()
        self._lock = threading.Lock()
        self._written = False
        self._done = False
        self._started = 0.0
        self._last_beat = 0.0

    def started(self) -> None:
        self._started = self._last_beat = time.monotonic()
        _monitor.add(self)

    def write_start(self) -> None:
        """Write the row of the running run now."""
        with self._lock:
            if not (self._written or self._done):
                self.store.start_run(self.run, pid=os.getpid(), pid_start=own_start())
                self._written = True

    def finished(self) -> None:
        _monitor.remove(self)
        with self._lock:  # nothing from the monitor may land after the outcome
            self._done = True
            try:
                self.store.finish_run(self.run, pid=os.getpid(), pid_start=own_start())
            except Exception as exc:  # noqa: BLE001 - recording never fails the run
                # the run went well or badly on its own: say that its record is missing,
                # and keep its outcome (a full disk, an input JSON cannot hold)
                log.warning("run %s is not in the history: %s", self.run.id, exc)

    def tick(self, now: float) -> None:
        """From the monitor: the start row when due, then a heartbeat per interval."""
        if not self._written:
            if now - self._started >= START_DELAY:
                self.write_start()
            return
        if now - self._last_beat < self.store.settings.heartbeat_interval:
            return
        self._last_beat = now
        with self._lock:
            if not self._done:
                self.store.heartbeat(self.run)


class _Monitor:
    """One daemon thread per process serving the recorded runs in flight; it ends after
    a few idle seconds and starts again with the next run."""

    TICK = 0.05
    IDLE = 5.0

    def __init__(self) -> None:
        self._recorders: dict[int, RunRecorder] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, recorder: RunRecorder) -> None:
        with self._lock:
            self._recorders[id(recorder)] = recorder
            if self._thread is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._loop, name="flowstage-store-monitor", daemon=True
                )
                self._thread.start()

    def remove(self, recorder: RunRecorder) -> None:
        with self._lock:
            self._recorders.pop(id(recorder), None)

    def _loop(self) -> None:
        idle_since = time.monotonic()
        while True:
            time.sleep(self.TICK)
            now = time.monotonic()
            with self._lock:
                recorders = list(self._recorders.values())
                if recorders:
                    idle_since = now
                elif now - idle_since > self.IDLE:
                    self._thread = None
                    return
            for recorder in recorders:
                try:
                    recorder.tick(now)
                except Exception as exc:  # noqa: BLE001 - a missed heartbeat must not end the run
                    log.warning("could not save the progress of run %s: %s", recorder.run.id, exc)


_monitor = _Monitor()


#: the recorders of the runs in flight in this process, by run id
_recording: dict[str, RunRecorder] = {}


@hookimpl(tryfirst=True)
def flowstage_run_started(run: Run) -> None:
    """Start keeping ``run`` (unless it asked not to be recorded)."""
    if not run.record:
        return
    recorder = RunRecorder(run)
    _recording[run.id] = recorder
    recorder.started()


@hookimpl(trylast=True)
def flowstage_run_finished(run: Run) -> None:
    """Write the outcome of ``run``, after every other plugin has seen it."""
    recorder = _recording.pop(run.id, None)
    if recorder is not None:
        recorder.finished()
