"""The run history: run rows written as runs start, progress and end, and read back."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from flowstage.core.appdir import create_private, private_dir
from flowstage.core.errors import UserError
from flowstage.core.runs import ACTIVE_STATES
from flowstage.state.database import Database
from flowstage.state.liveness import process_alive, this_host
from flowstage.state.logs import last_line
from flowstage.state.outputs import encode_outputs
from flowstage.state.rows import parse_time, stages_json

if TYPE_CHECKING:
    from flowstage.core.runs import Run

_ACTIVE_SQL = "('pending', 'running')"
#: a background run whose process never reported its pid after this long is dead
_START_GRACE = 60.0
#: the keys of a run in ``get runs`` listings
RUN_SUMMARY_KEYS = ("id", "workflow", "state", "source", "started_at", "finished_at")
#: a result's temporary file: a leftover of a process with the same pid is overwritten
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _utcnow() -> str:
    return datetime.now(timezone.utc).isoformat()


def _input_json(value: Any) -> str:
    """The run input as JSON (``repr`` for what JSON cannot hold), or a JSON string saying
    why it was not kept: an input that refers to itself must not cost the run its row."""
    try:
        return json.dumps(value, default=repr)
    except (ValueError, TypeError, RecursionError) as exc:
        return json.dumps(f"<input not kept: {type(exc).__name__}: {exc}>")


class RunHistory(Database):
    """The store's run rows."""

    # runs ---------------------------------------------------------------------------

    _START_SQL = (
        "INSERT INTO runs (id, workflow, state, source, executor, namespace, input, created_at, "
        "started_at, stages, host, pid, pid_start, heartbeat_at, retry_of) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET state = excluded.state, executor = excluded.executor, "
        "started_at = excluded.started_at, stages = excluded.stages, host = excluded.host, "
        "pid = excluded.pid, pid_start = excluded.pid_start, heartbeat_at = excluded.heartbeat_at"
    )
    _FINISH_SQL = (
        "UPDATE runs SET state = ?, finished_at = ?, stages = ?, error = ?, traceback = ?, "
        "result_kind = ?, result = ? WHERE id = ?"
    )

    def start_run(self, run: Run, *, pid: int | None = None, pid_start: str | None = None) -> None:
        """Insert the row of ``run`` (or bring a pending background row up to date)."""
        started = _iso(run.started_at)
        self.write_one(
            self._START_SQL,
            (
                run.id,
                run.workflow,
                run.state,
                run.source,
                run.executor,
                run.namespace,
                _input_json(run.input),
                started or _utcnow(),
                started,
                stages_json(run),
                this_host(),
                pid,
                pid_start,
                time.time(),
                run.retry_of,
            ),
        )

    _FINAL_SQL = (
        "INSERT INTO runs (id, workflow, state, source, executor, namespace, input, created_at, "
        "started_at, finished_at, stages, error, traceback, result_kind, result, host, pid, "
        "pid_start, heartbeat_at, retry_of, outputs) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET state = excluded.state, executor = excluded.executor, "
        "started_at = excluded.started_at, finished_at = excluded.finished_at, "
        "stages = excluded.stages, error = excluded.error, traceback = excluded.traceback, "
        "result_kind = excluded.result_kind, result = excluded.result, host = excluded.host, "
        "pid = excluded.pid, pid_start = excluded.pid_start, heartbeat_at = excluded.heartbeat_at, "
        "retry_of = excluded.retry_of, outputs = excluded.outputs"
    )

    def finish_run(self, run: Run, *, pid: int | None = None, pid_start: str | None = None) -> None:
        """Write the whole row of an ended run: state, stages, error with traceback, result
        (one statement, whether or not its start was written)."""
        kind, result = self._encode_result(run)
        outputs = encode_outputs(run, self.path.parent, self.settings)
        traceback = getattr(run.exception, "traceback", None) or None
        started = _iso(run.started_at)
        self.write_one(
            self._FINAL_SQL,
            (
                run.id,
                run.workflow,
                run.state,
                run.source,
                run.executor,
                run.namespace,
                _input_json(run.input),
                started or _utcnow(),
                started,
                _iso(run.finished_at),
                stages_json(run),
                run.error,
                traceback,
                kind,
                result,
                this_host(),
                pid,
                pid_start,
                time.time(),
                run.retry_of,
                outputs,
            ),
        )

    def _encode_result(self, run: Run) -> tuple[str | None, str | None]:
        """``("json", text)`` when the result round-trips through JSON within the inline
        limit, else ``("file", path)`` of its pickle, else ``("missing", reason)``."""
        if run.state != "finished":
            return None, None
        value = run.result
        try:
            text = json.dumps(value, allow_nan=False)
            if len(text) <= self.settings.max_inline_result and json.loads(text) == value:
                return "json", text
        except (TypeError, ValueError, RecursionError):
            pass

        try:
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - any object may refuse pickling its own way; try cloudpickle
            try:
                # lazy: cloudpickle is needed only for what plain pickle refuses
                import cloudpickle

                data = cloudpickle.dumps(value)
            except Exception as exc:  # noqa: BLE001 - a result that cannot be kept must not fail the run
                return (
                    "missing",
                    f"not kept: the result cannot be pickled ({type(exc).__name__}: {exc})",
                )
        limit = self.settings.max_result_size
        if len(data) > limit:
            return (
                "missing",
                f"not kept: its pickle is {len(data)} bytes, over store.max_result_size ({limit})",
            )
        relative = f"results/{run.id}.pkl"
        target = self.path.parent / relative
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            private_dir(target.parent)
            with os.fdopen(create_private(temporary, _NEW_FILE), "wb") as fh:
                fh.write(data)
            os.replace(temporary, target)
        except OSError as exc:  # a full disk: the row is still worth writing, without it
            with contextlib.suppress(OSError):
                temporary.unlink()
            reason = exc.strerror or str(exc)
            return "missing", f"not kept: writing {target} failed: {reason}"
        return "file", relative

    def create_pending_run(self, run: Run, *, request: dict[str, Any], log_path: str) -> None:
        """The row of a background run before its process starts."""
        self.start_run(run)
        with self.write() as conn:
            conn.execute(
                "UPDATE runs SET request = ?, log_path = ? WHERE id = ?",
                (json.dumps(request), log_path, run.id),
            )

    def set_process(self, run_id: str, pid: int, started: str | None) -> None:
        with self.write() as conn:
            conn.execute(
                "UPDATE runs SET pid = ?, pid_start = ?, host = ? WHERE id = ?",
                (pid, started, this_host(), run_id),
            )

    def heartbeat(self, run: Run) -> None:
        """Mark ``run`` alive and save its progress."""
        self.write_one(
            "UPDATE runs SET heartbeat_at = ?, stages = ?, state = ? "
            f"WHERE id = ? AND state IN {_ACTIVE_SQL}",
            (time.time(), stages_json(run), run.state, run.id),
        )

    def end_run(self, run_id: str, state: str, error: str) -> bool:
        """Set the final ``state`` of a run that is still pending or running; whether it was."""
        with self.write() as conn:
            row = conn.execute(
                f"SELECT stages FROM runs WHERE id = ? AND state IN {_ACTIVE_SQL}", (run_id,)
            ).fetchone()
            if row is None:
                return False
            stages = json.loads(row[0]) if row[0] else {}
            for entry in stages.values():  # what was still going on stopped with the run
                if entry.get("state") in ACTIVE_STATES:
                    entry["state"] = "cancelled" if state == "cancelled" else "failed"
            conn.execute(
                "UPDATE runs SET state = ?, error = ?, finished_at = ?, stages = ? WHERE id = ?",
                (state, error, _utcnow(), json.dumps(stages), run_id),
            )
        return True

    def request_cancel(self, run_id: str) -> None:
        with self.write() as conn:
            conn.execute("UPDATE runs SET cancel_requested = 1 WHERE id = ?", (run_id,))

    def cancel_requested(self, run_id: str) -> bool:
        """Whether a cancel was asked for the run ``run_id`` (False if there is no such run)."""
        rows = self.query("SELECT cancel_requested FROM runs WHERE id = ?", (run_id,))
        return bool(rows and rows[0][0])

    def reap(self) -> int:
        """Mark runs whose process is gone as failed, with the reason (as cancelled if a
        cancel was asked for); how many."""
        if not self.path.exists():
            return 0
        rows = self.query(
            "SELECT id, cancel_requested, source, host, pid, pid_start, heartbeat_at, created_at, "
            f"log_path FROM runs WHERE state IN {_ACTIVE_SQL}"
        )
        dead = [
            (run_id, cancel, reason)
            for run_id, cancel, *rest in rows
            if (reason := self._death_of(run_id, *rest))
        ]
        for run_id, cancel, reason in dead:
            if cancel:
                self.end_run(
                    run_id,
                    "cancelled",
                    "the run was cancelled (its process ended before it could say so)",
                )
            else:
                self.end_run(run_id, "failed", reason)
        return len(dead)

    def _death_of(
        self,
        run_id: str,
        source: str,
        host: str | None,
        pid: int | None,
        pid_start: str | None,
        heartbeat_at: float | None,
        created_at: str,
        log_path: str | None,
    ) -> str | None:
        """Why a pending/running run is dead, or None while its process lives."""
        who = (
            "the background process"
            if source == "background"
            else f"the process running it ({source} run)"
        )
        if host == this_host() or host is None:
            if pid is None:
                created = parse_time(created_at)
                if (
                    created
                    and (datetime.now(timezone.utc) - created).total_seconds() > _START_GRACE
                ):
                    return f"{who} never started"
                return None
            if process_alive(pid, pid_start):
                return None
            reason = (
                f"{who} (pid {pid}) ended without finishing the run "
                "(killed, crashed, or the machine restarted)"
            )
        else:
            stale = max(30.0, 10 * self.settings.heartbeat_interval)
            if heartbeat_at is None or time.time() - heartbeat_at <= stale:
                return None
            seen = datetime.fromtimestamp(heartbeat_at, timezone.utc).strftime(
                "%Y-%m-%d %H:%M:%S UTC"
            )
            reason = (
                f"{who} (pid {pid} on {host}) sent no heartbeat since {seen}; it is presumed dead"
            )
        last = last_line(run_id) if log_path else None
        return f"{reason}; its last output: {last}" if last else reason

    def list_runs(
        self,
        *,
        limit: int = 50,
        offset: int = 0,
        workflow: str | None = None,
        state: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Run summaries, newest first, and how many runs match in all."""
        if not self.path.exists():
            return [], 0
        self.reap()
        where, params = [], []
        if workflow:
            where.append("workflow = ?")
            params.append(workflow)
        if state:
            where.append("state = ?")
            params.append(state)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        page = f" LIMIT {int(limit)} OFFSET {int(offset)}" if limit > 0 else ""
        rows = self.query(
            f"SELECT id, workflow, state, source, started_at, finished_at FROM runs{clause} "
            f"ORDER BY seq DESC{page}",
            tuple(params),
        )
        total = self.query(f"SELECT count(*) FROM runs{clause}", tuple(params))[0][0]
        return [dict(zip(RUN_SUMMARY_KEYS, row, strict=True)) for row in rows], total

    _RUN_COLUMNS = (
        "id",
        "workflow",
        "state",
        "source",
        "executor",
        "namespace",
        "input",
        "created_at",
        "started_at",
        "finished_at",
        "stages",
        "error",
        "traceback",
        "result_kind",
        "result",
        "host",
        "pid",
        "pid_start",
        "heartbeat_at",
        "cancel_requested",
        "log_path",
        "request",
        "retry_of",
        "outputs",
    )

    def find_run(self, run_id: str, *, prefix: bool = True) -> dict[str, Any] | None:
        """The full row of a run, by id or (with ``prefix``) a unique id prefix; None if
        there is none.

        :raises UserError: the prefix matches several runs
        """
        if not self.path.exists() or not run_id:
            return None
        found = self._run_row(run_id, prefix)
        if found is not None and found[self._RUN_COLUMNS.index("state")] in ACTIVE_STATES:
            # its process may be gone: then the run is failed (or cancelled) by now
            self.reap()
            found = self._run_row(found[0], False)
        if found is None:
            return None
        row = dict(zip(self._RUN_COLUMNS, found, strict=True))
        for key in ("input", "stages", "request"):
            row[key] = json.loads(row[key]) if row[key] else ({} if key != "request" else None)
        return row

    def _run_row(self, run_id: str, prefix: bool) -> tuple[Any, ...] | None:
        """The raw row of ``find_run`` (``_RUN_COLUMNS``), not reaped."""
        columns = ", ".join(self._RUN_COLUMNS)
        rows = self.query(f"SELECT {columns} FROM runs WHERE id = ?", (run_id,))
        if not rows and prefix:
            pattern = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            rows = self.query(
                f"SELECT {columns} FROM runs WHERE id LIKE ? ESCAPE '\\' LIMIT 6", (pattern,)
            )
            if len(rows) > 1:
                ids = ", ".join(r[0] for r in rows[:5])
                raise UserError(
                    f"run id prefix {run_id!r} matches several runs ({ids}); give more of the id"
                )
        return rows[0] if rows else None

    def load_result(self, row: dict[str, Any]) -> Any:
        """The result of a finished run row.

        :raises UserError: the run has no kept result (says why)
        """
        kind, text = row.get("result_kind"), str(row.get("result"))
        if kind == "json":
            return json.loads(text)
        if kind == "file":
            path = self.path.parent / text
            try:
                with open(path, "rb") as fh:
                    return pickle.load(fh)
            except FileNotFoundError:
                raise UserError(f"run {row['id']}: its result file {path} is gone") from None
        if kind == "missing":
            raise UserError(f"run {row['id']}: result {text}")
        raise UserError(f"run {row['id']} has no result (state {row['state']})")
