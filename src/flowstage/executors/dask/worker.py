"""What runs on Dask workers: the task entry, printed lines sent back to the driver,
and the worker plugins that set the environment and put the stage code in place."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from flowstage.core.calls import run_batch
from flowstage.core.sources import use_sources
from flowstage.executors.dask.results import (
    Kept,
    opened,
    opened_within,
)
from flowstage.executors.packing import unpack_call

if TYPE_CHECKING:
    from flowstage.core.sources import SourceBundle

log = logging.getLogger("flowstage.executors.dask.worker")


def run_remote(label: str, output_topic: str | None, call: Any, *values: Any) -> Kept:
    """Task entry on a worker: ``fn(*args)``, kept as a :class:`Kept` (Dask serializes a
    result only when another worker or the driver needs it; then a failure to move it is
    reported, naming the stage, instead of hanging the transfer).

    ``call`` is the function itself (``values`` are its arguments), or a call packed by
    :func:`~flowstage.executors.packing.pack_call`; ``values`` include upstream results.
    With an ``output_topic`` (workers that do not write to the driver's terminal), what
    the call prints is also sent to the driver.
    """
    if isinstance(call, bytes):
        # Unpacking puts the run's code in place first: upstream values that could not
        # be unpickled on arrival (classes from that code) are unpickled again now.
        fn, args = unpack_call(call, values)
        args = tuple(opened(arg) for arg in args)  # raises an upstream value's failure to arrive
    else:
        fn, args = call, opened_within(values)
    with _output_sent(output_topic, label):
        value = fn(*args)
    return Kept(value, label, args[1] if fn is run_batch else None)


#: the output topic and stage of the call running in this thread, and its unsent text
_sending = threading.local()
_wrapping = threading.Lock()


class _StageOutput:
    """Stands in for ``sys.stdout``/``sys.stderr`` in a worker: text goes to the worker's
    own stream as before, and complete lines a stage prints also go to its driver."""

    def __init__(self, stream: Any, name: str) -> None:
        self.stream = stream
        self.name = name

    def write(self, text: str) -> int:
        written = self.stream.write(text)
        topic = getattr(_sending, "topic", None)
        if topic is not None and text:
            pending = _sending.pending.get(self.name, "") + text
            lines, newline, rest = pending.rpartition("\n")
            _sending.pending[self.name] = rest
            if newline:
                _send(topic, self.name, lines)
        return int(written)

    def __getattr__(self, name: str) -> Any:  # flush, encoding, isatty, fileno, ...
        return getattr(self.stream, name)


def _send(topic: str, stream: str, text: str) -> None:
    # lazy: Dask is an optional extra, imported only when it runs
    from distributed import get_worker

    with contextlib.suppress(Exception):  # never fail a stage over its output
        get_worker().log_event(topic, {"stream": stream, "stage": _sending.stage, "text": text})


@contextlib.contextmanager
def _output_sent(topic: str | None, label: str) -> Iterator[None]:
    if topic is None:
        yield
        return
    with _wrapping:
        for name in ("stdout", "stderr"):
            if not isinstance(getattr(sys, name), _StageOutput):
                setattr(sys, name, _StageOutput(getattr(sys, name), name))
    _sending.topic, _sending.stage, _sending.pending = topic, label, {}
    try:
        yield
    finally:
        for name, rest in _sending.pending.items():
            if rest:
                _send(topic, name, rest)
        _sending.topic = None


def executing(keys: list[str], dask_worker: Any = None) -> tuple[int, list[str]]:
    """This worker's pid and which of ``keys`` it is still executing (via ``Client.run``)."""
    wanted = set(keys)
    state = getattr(dask_worker, "state", None)
    running = getattr(state, "executing", ()) if state is not None else ()
    return os.getpid(), [ts.key for ts in running if ts.key in wanted]


def worker_plugin(env: dict[str, str], name: str) -> Any:
    """A worker plugin that sets ``env`` (external clusters) and keeps stage failures,
    which flowstage reports itself, out of the worker's error log."""
    # lazy: Dask is an optional extra, imported only when it runs
    from distributed.diagnostics.plugin import WorkerPlugin

    class FlowstageWorker(WorkerPlugin):
        idempotent = False

        def __init__(self) -> None:
            self.name = name
            self.env = dict(env)
            self.saved: dict[str, str | None] = {}
            self.filter: Any = None

        def setup(self, worker: Any) -> None:
            for key, value in self.env.items():
                self.saved.setdefault(key, os.environ.get(key))
                os.environ[key] = value

            def keep(record: logging.LogRecord) -> bool:
                args = record.args if isinstance(record.args, tuple) else ()
                return not (
                    str(record.msg).startswith("Compute Failed")
                    and len(args) > 3
                    and str(args[3]).startswith("CallFailure(")
                )

            self.filter = keep
            logging.getLogger("distributed.worker").addFilter(keep)

        def teardown(self, worker: Any) -> None:
            for key, value in self.saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            if self.filter is not None:
                logging.getLogger("distributed.worker").removeFilter(self.filter)

    return FlowstageWorker()


#: the name of the worker plugin that holds the latest stage code sent to a cluster (one
#: for the cluster: a worker process imports one version of the code at a time)
CODE_PLUGIN = "flowstage-code"


def code_plugin(bundle: SourceBundle) -> Any:
    """A worker plugin that puts ``bundle``'s code in place on every worker, including
    workers that join later (see ``Executor.install_code``)."""
    # lazy: Dask is an optional extra, imported only when it runs
    from distributed.diagnostics.plugin import WorkerPlugin

    class FlowstageCode(WorkerPlugin):
        idempotent = False
        name = CODE_PLUGIN

        def __init__(self) -> None:
            self.bundle = bundle

        async def setup(self, worker: Any) -> None:
            # Off the worker's event loop: unpacking takes a while, and a task thread may
            # hold the code lock through a long import.
            await asyncio.to_thread(use_sources, self.bundle)

    return FlowstageCode()
