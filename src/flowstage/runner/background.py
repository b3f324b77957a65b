"""Background runs (``flowstage run --no-wait``): a detached process per run.

The caller validates the workflow and the input (so mistakes show at once, exit 2),
writes a ``pending`` row and starts ``python -m flowstage.runner.background RUN_ID`` in a
session of its own, its output going to ``<app dir>/logs/RUN_ID.log``. That process
runs the workflow with ``source="background"``; the run recorder writes its progress
and heartbeat, so a process that dies is shown as ``failed`` with the reason on the next
read. ``runs cancel`` asks the process to stop (SIGTERM, and a flag in the row for a
process on another host); the run ends ``cancelled``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flowstage.core.appdir import create_private, private_dir
from flowstage.core.errors import UnknownNameError, UserError
from flowstage.core.runs import ACTIVE_STATES, Run, StageRecord, new_run_id
from flowstage.state.liveness import process_alive, process_is, process_start, this_host
from flowstage.state.logs import log_path, logs_dir, run_log
from flowstage.state.store import get_store

#: how long ``runs cancel`` waits for the run to stop before killing its process
CANCEL_TIMEOUT = 10.0


def start_background_run(
    workflow: Any,
    run_input: Mapping[str, Any] | None = None,
    *,
    executor: str | Mapping[str, Any] | None = None,
    namespace: str = "default",
    retry_of: str | None = None,
    cache: bool | str = True,
) -> str:
    """Start a run in a detached process; its id. The workflow, the input and the
    executor are checked first. With ``retry_of``, the run retries that run (its
    workflow, input, executor and namespace unless given; see ``retry_run``). ``cache``
    is as for ``run_workflow``.

    :raises WorkflowError: the workflow or the input is invalid (nothing started)
    :raises UserError: the input cannot be handed to another process as JSON, or a
        target is a Python callable rather than an import string
    """

    # lazy: `runs cancel` and `runs logs` use this module without running anything
    from flowstage.core.caching import cache_mode
    from flowstage.runner.prepare import create_executor, executor_spec, prepare_run

    plan = None
    if retry_of is not None:
        # lazy: `runs cancel` and `runs logs` use this module without running anything
        from flowstage.runner.retry import plan_retry

        plan = plan_retry(retry_of)
        retry_of = plan.run_id
        workflow = plan.workflow if workflow is None else workflow
        if workflow is None:
            msg = f"run {plan.run_id}: its workflow was given inline: pass it to retry the run"
            raise UserError(msg)
        run_input = plan.input if run_input is None else run_input
        executor = plan.executor if executor is None else executor
        namespace = plan.namespace if namespace == "default" else namespace
    # a retry is checked as it will run: the stages it reuses are not (their outputs
    # must be there)
    prepared = prepare_run(workflow, run_input, retry=plan)
    plugins, definition, run_input, home = (
        prepared.plugins,
        prepared.workflow,
        prepared.input,
        prepared.home,
    )
    spec = executor_spec(executor)
    # checks the name and the options; not started
    engine = create_executor(dict(spec), plugins=plugins)
    callables = [s.name for s in definition.spec.stages if not isinstance(s.target, str)]
    if callables:
        msg = (
            f"workflow {definition.name!r}: stage(s) {', '.join(callables)} "
            "have Python callables as targets; "
            "a background run needs import strings such as 'package.module.function'"
        )
        raise UserError(msg)
    request = {
        "definition": definition.model_dump(mode="json", exclude_unset=True),
        "source": definition.source,
        "input": run_input,
        "executor": spec,
        "namespace": namespace,
        "retry_of": retry_of,
        "cache": cache_mode(cache),
    }
    try:
        json.dumps(request)
    except (TypeError, ValueError) as exc:
        raise UserError(
            f"a background run's input and executor options must be JSON values: {exc}"
        ) from None
    run = Run(
        id=new_run_id(),
        workflow=definition.name,
        source="background",
        executor=engine.name,
        namespace=namespace,
        input=run_input,
        stages={s.name: StageRecord(s.name) for s in definition.spec.stages},
        retry_of=retry_of,
    )
    log = log_path(run.id)
    private_dir(log.parent)
    store = get_store()
    store.create_pending_run(run, request=request, log_path=str(log))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "FLOWSTAGE_HOME": home}
    with os.fdopen(create_private(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND), "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "flowstage.runner.background", run.id],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    store.set_process(run.id, process.pid, process_start(process.pid))
    return run.id


# -- the detached process ---------------------------------------------------------------------


def main(argv: list[str]) -> int:
    """Run the background run ``argv[0]`` (the entry point of the detached process)."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # `runs cancel` before the run started: end as cancelled

    signal.signal(signal.SIGTERM, interrupt)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if len(argv) != 1:
        print("usage: python -m flowstage.runner.background RUN_ID", file=sys.stderr)
        return 2
    run_id = argv[0]
    store = get_store()
    row = store.find_run(run_id)
    if row is None or row["request"] is None:
        print(f"no background run {run_id!r} in {store.path}", file=sys.stderr)
        return 2
    if row["state"] not in ACTIVE_STATES:
        return 0
    store.set_process(run_id, os.getpid(), process_start(os.getpid()))
    if row["cancel_requested"]:
        store.end_run(run_id, "cancelled", "the run was cancelled before it started")
        return 0
    try:
        state = asyncio.run(_run(run_id, row["request"]))
    except (KeyboardInterrupt, asyncio.CancelledError):
        store.end_run(run_id, "cancelled", "the run was cancelled")
        print(f"run {run_id} cancelled", file=sys.stderr, flush=True)
        sys.stdout.flush()
        # stage calls still going in worker threads would keep the process alive
        os._exit(0)
    except BaseException as exc:  # noqa: BLE001 - whatever ends the process, the run must not stay running
        traceback.print_exc()
        store.end_run(run_id, "failed", f"{type(exc).__name__}: {exc}")
        return 1
    return 0 if state == "finished" else 1


async def _run(run_id: str, request: dict[str, Any]) -> str:
    # lazy: `runs cancel` and `runs logs` use this module without running anything
    from flowstage.core.loading import parse_resource
    from flowstage.core.models import Workflow
    from flowstage.runner.api import arun_workflow

    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    workflow = parse_resource(
        request["definition"], f"workflow of background run {run_id}", default_kind="workflow"
    )
    assert isinstance(workflow, Workflow)
    workflow._source = request.get("source")
    watcher = asyncio.ensure_future(_watch_cancel(run_id, task))
    try:
        run = await arun_workflow(
            workflow,
            request["input"],
            executor=request["executor"],
            namespace=request["namespace"],
            return_run=True,
            source="background",
            run_id=run_id,
            retry_of=request.get("retry_of"),
            cache=request.get("cache", True),
        )
    finally:
        watcher.cancel()
    if run.state == "failed":
        print(f"run {run_id} failed: {run.error}", file=sys.stderr)
        traceback = getattr(run.exception, "traceback", "")
        if traceback:
            print(traceback.rstrip(), file=sys.stderr)
    return str(run.state)


async def _watch_cancel(run_id: str, task: Any) -> None:
    """Stop the run when its row asks for it (``runs cancel`` from another host)."""

    store = get_store()
    while True:
        await asyncio.sleep(max(0.2, store.settings.heartbeat_interval))
        if await asyncio.to_thread(store.cancel_requested, run_id):
            task.cancel()
            return


# -- from the CLI ---------------------------------------------------------------------------------


def _find(run_id: str) -> dict[str, Any]:
    row = get_store().find_run(run_id)
    if row is None:
        raise UnknownNameError(f"no run with id {run_id!r} (`flowstage runs` lists them)")
    return row


def cancel_run(run_id: str, timeout: float = CANCEL_TIMEOUT) -> dict[str, Any]:
    """Stop a pending or running run; its row once it has ended (state ``cancelled``).

    Background runs get SIGTERM, foreground CLI runs SIGINT (as Ctrl-C); a process that
    has not stopped within ``timeout`` seconds is killed.

    :raises UnknownNameError: no run has that id
    :raises UserError: the run has already ended, or runs inside a Python program
    """

    store = get_store()
    row = _find(run_id)
    run_id = row["id"]
    if row["state"] not in ACTIVE_STATES:
        raise UserError(f"run {run_id} has already ended ({row['state']})")
    if row["source"] == "api":
        msg = (
            f"run {run_id} runs inside a Python program (pid {row['pid']} on {row['host']}): "
            "if that is `flowstage serve`, cancel it there with `flowstage runs cancel "
            f"{run_id} --server URL`; otherwise stop it in that program (KeyboardInterrupt, "
            "or cancel the task awaiting arun_workflow)"
        )
        raise UserError(msg)
    store.request_cancel(run_id)
    pid, local = row["pid"], row["host"] in (None, this_host())
    started = row["pid_start"]
    alive = bool(pid) and local and process_alive(pid, started)
    # a pid is only signalled when its start time proves it is still the run's process
    unsure = alive and not process_is(pid, started)
    if unsure:
        alive = False
    elif alive:
        os.kill(pid, signal.SIGTERM if row["source"] == "background" else signal.SIGINT)
    elif local and pid:
        store.end_run(run_id, "cancelled", "the run was cancelled")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = _find(run_id)
        if row["state"] not in ACTIVE_STATES:
            return row
        time.sleep(0.1)
    if alive and process_alive(pid, started):
        try:
            if row["source"] == "background":
                os.killpg(pid, signal.SIGKILL)  # its own session: workers it started go too
            else:
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        store.end_run(
            run_id,
            "cancelled",
            f"the run was cancelled: its process (pid {pid}) did not stop "
            f"within {timeout:g}s and was killed",
        )
        return _find(run_id)
    if not local:
        msg = (
            f"asked run {run_id} to stop; its process (pid {pid} on {row['host']}) has not "
            "stopped yet: it will at its next heartbeat"
        )
        raise UserError(msg)
    if unsure:
        msg = (
            f"asked run {run_id} to stop, but did not signal pid {pid}: the run's row "
            f"records no process start time{'' if not started else ' that can be checked'}, "
            f"so pid {pid} may now belong to another program; a --no-wait run that is still "
            "going stops by itself within a heartbeat, any other: check the process and "
            "stop it yourself"
        )
        raise UserError(msg)
    store.end_run(run_id, "cancelled", "the run was cancelled")
    return _find(run_id)


def read_log(run_id: str) -> tuple[dict[str, Any], Path]:
    """The run row and its log file (what its stages printed and logged).

    :raises UserError: the run did not run in the background (its output went to the
        terminal or program that ran it)
    """
    row = _find(run_id)
    if not row.get("log_path"):
        msg = (
            f"run {row['id']} ran in the foreground ({row['source']}): "
            "its output went to the terminal or "
            "program that ran it; only --no-wait runs keep a log"
        )
        raise UserError(msg)
    path = run_log(row["id"])
    if path is None:
        msg = f"run {row['id']}: its log is not a file under {logs_dir()}; not reading it"
        raise UserError(msg)
    return row, path


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
