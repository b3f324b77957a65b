"""The embedded SQLite store: applied resources and the run history.

One file, ``<app dir>/flowstage.db``, created on first use; no server. WAL mode lets
readers go on while a process writes, and every write starts with ``BEGIN IMMEDIATE``
so that a writer waits for another (up to ``store.busy_timeout``) instead of failing
the way a read transaction upgraded to a write does. The schema version lives in
``PRAGMA user_version``; ``MIGRATIONS[n]`` takes a store from version ``n`` to ``n + 1``.

A run row is written when the run starts and when it ends. In between, one thread per
process (the monitor) saves the progress of long runs and marks them alive (heartbeat),
so that a run whose process died is shown as ``failed`` with the reason on the next read
instead of staying ``running`` forever.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowstage.core.errors import UserError
from flowstage.core.settings import StoreSettings, app_dir

if TYPE_CHECKING:
    import sqlite3

    from flowstage.core.models import ConfigResource, Workflow
    from flowstage.core.runs import Run

DB_NAME = "flowstage.db"
SCHEMA_VERSION = 1
ACTIVE_STATES = ("pending", "running")
_ACTIVE_SQL = "('pending', 'running')"
#: a background run whose process never reported its pid after this long is dead
_START_GRACE = 60.0

MIGRATIONS: list[tuple[str, ...]] = [
    (  # 0 -> 1
        """CREATE TABLE resources (
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            document TEXT NOT NULL,
            annotations TEXT NOT NULL DEFAULT '{}',
            source TEXT,
            version INTEGER NOT NULL DEFAULT 1,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (kind, name)
        )""",
        """CREATE TABLE runs (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            workflow TEXT NOT NULL,
            state TEXT NOT NULL,
            source TEXT NOT NULL,
            executor TEXT,
            namespace TEXT,
            input TEXT,
            created_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT,
            stages TEXT,
            error TEXT,
            traceback TEXT,
            result_kind TEXT,
            result TEXT,
            host TEXT,
            pid INTEGER,
            pid_start TEXT,
            heartbeat_at REAL,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            log_path TEXT,
            request TEXT
        )""",
        "CREATE INDEX runs_by_workflow ON runs (workflow, seq)",
        "CREATE INDEX runs_active ON runs (state) WHERE state IN ('pending', 'running')",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ),
]

RUN_SUMMARY_KEYS = ("id", "workflow", "state", "source", "started_at", "finished_at")


class StoreError(UserError):
    """The store file cannot be used: corrupt, not a flowstage store, from a newer
    flowstage, or held locked by another process for longer than ``store.busy_timeout``."""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _utcnow() -> str:
    return datetime.now(timezone.utc).isoformat()


# -- this process ---------------------------------------------------------------------

_host: str | None = None
_self_start: tuple[int, str | None] | None = None


def this_host() -> str:
    global _host
    if _host is None:
        import socket

        _host = socket.gethostname()
    return _host


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from ``/proc``), or None."""
    info = _proc_stat(pid)
    return info[1] if info else None


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """``(state letter, start time)`` of a process from ``/proc`` (None where there is none)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = text[text.rfind(")") + 2 :].split()
    return (fields[0], fields[19]) if len(fields) > 19 else None


def _own_start() -> str | None:
    global _self_start
    pid = os.getpid()
    if _self_start is None or _self_start[0] != pid:
        _self_start = (pid, process_start(pid))
    return _self_start[1]


def process_alive(pid: int, started: str | None) -> bool:
    """Whether ``pid`` on this host is still the process that started at ``started``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    info = _proc_stat(pid)
    if info is None:
        return True
    state, start = info
    if state in ("Z", "X"):  # exited, waiting for its parent to collect it
        return False
    return not started or start == started


# -- the store ------------------------------------------------------------------------


def _is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class Store:
    """The SQLite store at ``path``. One connection per process, shared by its threads."""

    def __init__(self, path: Path, settings: StoreSettings) -> None:
        self.path = path
        self.settings = settings
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._configs: tuple[str | None, list[ConfigResource]] = ("", [])

    # connection ------------------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        # a forked child must not use its parent's connection: open its own
        if self._conn is None or self._pid != os.getpid():
            self._conn = self._open()
            self._pid = os.getpid()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        import sqlite3

        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.settings.busy_timeout
        while True:
            conn = None
            try:
                conn = sqlite3.connect(
                    str(self.path),
                    timeout=self.settings.busy_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
                self._prepare(conn)
                return conn
            except sqlite3.Error as exc:
                if conn is not None:
                    conn.close()
                if (
                    isinstance(exc, sqlite3.OperationalError)
                    and _is_busy(exc)
                    and time.monotonic() < deadline
                ):
                    time.sleep(0.02)
                    continue
                raise self._error(exc) from None
            except BaseException:
                if conn is not None:
                    conn.close()
                raise

    def _prepare(self, conn: sqlite3.Connection) -> None:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.execute("PRAGMA journal_mode=WAL")
        # WAL with synchronous=NORMAL survives a crash of any process; only a power cut
        # can lose the last commits, and recording stays cheap
        conn.execute("PRAGMA synchronous=NORMAL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            self._migrate(conn)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                msg = (
                    f"{self.path}: the store has schema version {version}, newer than this flowstage "
                    f"understands ({SCHEMA_VERSION}); upgrade flowstage, or set FLOWSTAGE_HOME to "
                    "another folder"
                )
                raise StoreError(msg)
            if version == 0:
                tables = [
                    r[0]
                    for r in conn.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                    )
                ]
                if tables:
                    msg = (
                        f"{self.path}: not a flowstage store (it holds tables {', '.join(sorted(tables))} "
                        "but no flowstage schema version); move it away to start a new store"
                    )
                    raise StoreError(msg)
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step]:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _error(self, exc: BaseException) -> StoreError:
        if _is_busy(exc):
            msg = (
                f"{self.path}: another process kept the store busy for more than "
                f"{self.settings.busy_timeout:g}s; try again, or raise store.busy_timeout"
            )
            return StoreError(msg)
        msg = (
            f"{self.path}: cannot be used as the flowstage store: {exc} (the file is corrupt or not "
            "a flowstage database; move it away to start a new store, or restore a backup)"
        )
        return StoreError(msg)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``): committed on exit, rolled back on error."""
        import sqlite3

        with self._lock:
            try:
                conn = self.connection()
                self._begin(conn)
            except sqlite3.Error as exc:
                raise self._error(exc) from None
            with self._committed(conn):
                yield conn

    @contextmanager
    def _committed(self, conn: sqlite3.Connection) -> Iterator[None]:
        """Commit an open transaction on exit; roll it back on any error (a SQLite error
        is reported as a :class:`StoreError` naming the file)."""
        import sqlite3

        try:
            yield
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise self._error(exc) from None
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def write_one(self, sql: str, params: tuple[Any, ...]) -> int:
        """Run one write statement in its own transaction; the number of rows it changed.

        The path every recorded run takes, so it skips the generality of :meth:`write`
        unless the store is busy.
        """
        import sqlite3

        with self._lock:
            conn = self._conn if self._conn is not None and self._pid == os.getpid() else None
            if conn is not None:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError:
                    conn = None  # busy for longer than the busy handler waited: take the slow path
            if conn is None:
                with self.write() as slow:
                    return slow.execute(sql, params).rowcount
            with self._committed(conn):
                return conn.execute(sql, params).rowcount

    def _begin(self, conn: sqlite3.Connection) -> None:
        import sqlite3

        deadline = time.monotonic() + self.settings.busy_timeout
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                # the busy handler already waited; keep going until our own deadline
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only statement."""
        import sqlite3

        deadline = time.monotonic() + self.settings.busy_timeout
        with self._lock:
            while True:
                try:
                    return self.connection().execute(sql, params).fetchall()
                except sqlite3.OperationalError as exc:
                    if _is_busy(exc) and time.monotonic() < deadline:
                        time.sleep(0.01)
                        continue
                    raise self._error(exc) from None
                except sqlite3.Error as exc:
                    raise self._error(exc) from None

    # resources ---------------------------------------------------------------------

    def _bump_generation(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('resources', '1') "
            "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
        )

    def put_resources(self, items: list[dict[str, Any]]) -> list[str]:
        """Create or update resources, all in one transaction.

        :param items: ``{kind, name, document, annotations, source}`` each
        :returns: ``created``, ``updated`` or ``unchanged`` for each item
        """
        outcomes = []
        stamp = _utcnow()
        with self.write() as conn:
            for item in items:
                document = json.dumps(item["document"], sort_keys=True, default=str)
                annotations = json.dumps(item.get("annotations") or {}, sort_keys=True, default=str)
                row = conn.execute(
                    "SELECT document, source FROM resources WHERE kind = ? AND name = ?",
                    (item["kind"], item["name"]),
                ).fetchone()
                if row is None:
                    conn.execute(
                        "INSERT INTO resources (kind, name, document, annotations, source, version, "
                        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
                        (
                            item["kind"],
                            item["name"],
                            document,
                            annotations,
                            item.get("source"),
                            stamp,
                            stamp,
                        ),
                    )
                    outcomes.append("created")
                elif row[0] == document:
                    if row[1] != item.get("source"):
                        conn.execute(
                            "UPDATE resources SET source = ? WHERE kind = ? AND name = ?",
                            (item.get("source"), item["kind"], item["name"]),
                        )
                    outcomes.append("unchanged")
                else:
                    conn.execute(
                        "UPDATE resources SET document = ?, annotations = ?, source = ?, "
                        "version = version + 1, updated_at = ? WHERE kind = ? AND name = ?",
                        (
                            document,
                            annotations,
                            item.get("source"),
                            stamp,
                            item["kind"],
                            item["name"],
                        ),
                    )
                    outcomes.append("updated")
            if any(o != "unchanged" for o in outcomes):
                self._bump_generation(conn)
        return outcomes

    def delete_resources(self, keys: list[tuple[str, str]]) -> list[bool]:
        """Delete ``(kind, name)`` resources in one transaction; whether each existed."""
        found = []
        with self.write() as conn:
            for kind, name in keys:
                cursor = conn.execute(
                    "DELETE FROM resources WHERE kind = ? AND name = ?", (kind, name)
                )
                found.append(cursor.rowcount > 0)
            if any(found):
                self._bump_generation(conn)
        return found

    _RESOURCE_COLUMNS = "kind, name, document, annotations, source, version, created_at, updated_at"

    def _resource(self, row: tuple[Any, ...]) -> dict[str, Any]:
        kind, name, document, annotations, source, version, created, updated = row
        return {
            "kind": kind,
            "name": name,
            "document": json.loads(document),
            "annotations": json.loads(annotations),
            "source": source,
            "version": version,
            "created_at": created,
            "updated_at": updated,
        }

    def get_resource(self, kind: str, name: str) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        rows = self.query(
            f"SELECT {self._RESOURCE_COLUMNS} FROM resources WHERE kind = ? AND name = ?",
            (kind, name),
        )
        return self._resource(rows[0]) if rows else None

    def list_resources(self, kind: str) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        rows = self.query(
            f"SELECT {self._RESOURCE_COLUMNS} FROM resources WHERE kind = ? ORDER BY name", (kind,)
        )
        return [self._resource(r) for r in rows]

    def configs(self) -> list[ConfigResource]:
        """Every applied config, in name order (parsed once per change of the resources)."""
        if not self.path.exists():
            return []
        rows = self.query("SELECT value FROM meta WHERE key = 'resources'")
        generation = rows[0][0] if rows else None
        if generation != self._configs[0]:
            from flowstage.core.models import ConfigResource

            parsed = [
                ConfigResource.model_validate(r["document"]) for r in self.list_resources("config")
            ]
            self._configs = (generation, parsed)
        return self._configs[1]

    # runs ---------------------------------------------------------------------------

    _START_SQL = (
        "INSERT INTO runs (id, workflow, state, source, executor, namespace, input, created_at, started_at, "
        "stages, host, pid, pid_start, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET state = excluded.state, executor = excluded.executor, "
        "started_at = excluded.started_at, stages = excluded.stages, host = excluded.host, pid = excluded.pid, "
        "pid_start = excluded.pid_start, heartbeat_at = excluded.heartbeat_at"
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
                json.dumps(run.input, default=repr),
                started or _utcnow(),
                started,
                stages_json(run),
                this_host(),
                pid,
                pid_start,
                time.time(),
            ),
        )

    _FINAL_SQL = (
        "INSERT INTO runs (id, workflow, state, source, executor, namespace, input, created_at, started_at, "
        "finished_at, stages, error, traceback, result_kind, result, host, pid, pid_start, heartbeat_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET state = excluded.state, executor = excluded.executor, "
        "started_at = excluded.started_at, finished_at = excluded.finished_at, stages = excluded.stages, "
        "error = excluded.error, traceback = excluded.traceback, result_kind = excluded.result_kind, "
        "result = excluded.result, host = excluded.host, pid = excluded.pid, pid_start = excluded.pid_start, "
        "heartbeat_at = excluded.heartbeat_at"
    )

    def finish_run(self, run: Run, *, pid: int | None = None, pid_start: str | None = None) -> None:
        """Write the whole row of an ended run: state, stages, error with traceback, result
        (one statement, whether or not its start was written)."""
        kind, result = self._encode_result(run)
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
                json.dumps(run.input, default=repr),
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
        import pickle

        try:
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - any object may refuse pickling its own way; try cloudpickle
            try:
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
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, target)
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
            f"UPDATE runs SET heartbeat_at = ?, stages = ?, state = ? WHERE id = ? AND state IN {_ACTIVE_SQL}",
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
            if (reason := self._death_of(*rest))
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
            reason = f"{who} (pid {pid}) ended without finishing the run (killed, crashed, or the machine restarted)"
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
        last = _last_line(log_path)
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
        return [dict(zip(RUN_SUMMARY_KEYS, row)) for row in rows], total

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
    )

    def find_run(self, run_id: str, *, prefix: bool = True) -> dict[str, Any] | None:
        """The full row of a run, by id or (with ``prefix``) a unique id prefix; None if
        there is none.

        :raises UserError: the prefix matches several runs
        """
        if not self.path.exists() or not run_id:
            return None
        self.reap()
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
        if not rows:
            return None
        row = dict(zip(self._RUN_COLUMNS, rows[0]))
        for key in ("input", "stages", "request"):
            row[key] = json.loads(row[key]) if row[key] else ({} if key != "request" else None)
        return row

    def load_result(self, row: dict[str, Any]) -> Any:
        """The result of a finished run row.

        :raises UserError: the run has no kept result (says why)
        """
        kind, text = row.get("result_kind"), str(row.get("result"))
        if kind == "json":
            return json.loads(text)
        if kind == "file":
            import pickle

            path = self.path.parent / text
            try:
                with open(path, "rb") as fh:
                    return pickle.load(fh)
            except FileNotFoundError:
                raise UserError(f"run {row['id']}: its result file {path} is gone") from None
        if kind == "missing":
            raise UserError(f"run {row['id']}: result {text}")
        raise UserError(f"run {row['id']} has no result (state {row['state']})")


def describe_run(row: dict[str, Any]) -> dict[str, Any]:
    """A run row as ``inspect run`` shows it: every stage with state, duration, attempts,
    map items, failed items and error; the run's error with traceback; its result."""

    def seconds(start: str | None, end: str | None) -> float | None:
        begun, ended = parse_time(start), parse_time(end)
        return round((ended - begun).total_seconds(), 3) if begun and ended else None

    stages = {}
    for name, entry in (row.get("stages") or {}).items():
        stage: dict[str, Any] = {
            "state": entry.get("state"),
            "attempts": entry.get("attempts", 0),
            "started_at": entry.get("started_at"),
            "finished_at": entry.get("finished_at"),
            "duration": seconds(entry.get("started_at"), entry.get("finished_at")),
        }
        if entry.get("items_total") is not None:
            stage["items"] = f"{entry.get('items_done', 0)}/{entry['items_total']}"
        if entry.get("failed_items"):
            stage["failed_items"] = entry["failed_items"]
        if entry.get("error"):
            stage["error"] = entry["error"]
        stages[name] = stage
    out: dict[str, Any] = {
        key: row.get(key) for key in ("id", "workflow", "state", "source", "executor", "namespace")
    }
    out.update(
        {
            "input": row.get("input") or {},
            "created_at": row.get("created_at"),
            "started_at": row.get("started_at"),
            "finished_at": row.get("finished_at"),
            "duration": seconds(row.get("started_at"), row.get("finished_at")),
            "stages": stages,
        }
    )
    if row.get("error"):
        out["error"] = row["error"]
    if row.get("traceback"):
        out["traceback"] = row["traceback"]
    kind = row.get("result_kind")
    if kind == "json":
        out["result"] = json.loads(row["result"])
    elif kind == "file":
        out["result_file"] = str(app_dir() / row["result"])
    elif kind == "missing":
        out["result"] = f"<{row['result']}>"
    if row.get("log_path"):
        out["log"] = row["log_path"]
    if row.get("state") in ACTIVE_STATES:
        out["process"] = {
            "host": row.get("host"),
            "pid": row.get("pid"),
            "heartbeat_at": (
                datetime.fromtimestamp(row["heartbeat_at"], timezone.utc).isoformat()
                if row.get("heartbeat_at")
                else None
            ),
        }
    return out


def _last_line(log_path: str | None) -> str | None:
    if not log_path:
        return None
    try:
        with open(log_path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 2048))
            lines = [ln for ln in fh.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return None
    return lines[-1].strip()[:300] if lines else None


def stages_json(run: Run) -> str:
    """The stages of ``run`` (state, times, attempts, map items, failures) as JSON."""
    out: dict[str, Any] = {}
    for name, record in list(run.stages.items()):
        entry: dict[str, Any] = {"state": record.state, "attempts": record.attempts}
        if record.started_at is not None:
            entry["started_at"] = record.started_at.isoformat()
        if record.finished_at is not None:
            entry["finished_at"] = record.finished_at.isoformat()
        if record.items_total is not None:
            entry["items_total"] = record.items_total
            entry["items_done"] = record.items_done
        if record.failed_items:
            entry["failed_items"] = list(record.failed_items)
        if record.error:
            entry["error"] = record.error
        out[name] = entry
    return json.dumps(out, default=repr)


# -- one store per app directory and settings ---------------------------------------------

_stores: dict[tuple[Any, ...], Store] = {}
#: the variables that can change the store settings (looked up one by one: walking the
#: whole environment on every run would cost more than recording the run)
_STORE_ENV = (
    "FLOWSTAGE__STORE",
    *(f"FLOWSTAGE__STORE__{f.upper()}" for f in StoreSettings.model_fields),
)
_stores_lock = threading.Lock()


def _settings_file(home: str | None) -> str:
    cached = _settings_files.get(home)
    if cached is None:
        cached = _settings_files[home] = str(app_dir() / "settings.yaml")
    return cached


_settings_files: dict[str | None, str] = {}


def get_store() -> Store:
    """The store of the current app directory (``FLOWSTAGE_HOME``), with its settings."""
    # called twice per run: keep it to a stat and a few lookups
    environ = os.environ
    home = environ.get("FLOWSTAGE_HOME")
    try:
        stat = os.stat(_settings_file(home))
        signature: Any = (stat.st_mtime_ns, stat.st_size)
    except OSError:
        signature = None
    key = (home, signature, *(environ.get(name) for name in _STORE_ENV))
    store = _stores.get(key)
    if store is None:
        settings = _store_settings(signature is not None, any(v is not None for v in key[2:]))
        with _stores_lock:
            store = _stores.get(key)
            if store is None:
                if len(_stores) >= 16:  # tests switch FLOWSTAGE_HOME often: forget old stores
                    _stores.pop(next(iter(_stores)))
                store = _stores[key] = Store(app_dir() / DB_NAME, settings)
    return store


def _store_settings(has_file: bool, has_env: bool) -> StoreSettings:
    """``store:`` settings; the defaults without validating the whole settings file when
    neither the file nor the environment sets any (``flowstage get runs`` starts faster)."""
    from flowstage.core.settings import (
        load_settings,
        read_settings_file,
        settings_path,
    )

    if has_env or (has_file and "store" in read_settings_file(settings_path())):
        return load_settings().store
    return StoreSettings.model_construct()


def matching_config_data(workflow: Workflow) -> dict[str, Any]:
    """Data of every applied config whose selector matches ``workflow``, deep-merged in
    name order (later names win)."""
    from flowstage.core.settings import deep_merge

    data: dict[str, Any] = {}
    for config in get_store().configs():
        selector = config.spec.selector
        if selector is None or selector.matches(workflow):
            data = deep_merge(data, config.spec.data)
    return data


def matching_configs(workflow: Workflow) -> list[ConfigResource]:
    """The applied configs that apply to ``workflow``, in merge order."""
    return [
        c
        for c in get_store().configs()
        if c.spec.selector is None or c.spec.selector.matches(workflow)
    ]


# -- recording runs -----------------------------------------------------------------------


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
                self.store.start_run(self.run, pid=os.getpid(), pid_start=_own_start())
                self._written = True

    def finished(self) -> None:
        _monitor.remove(self)
        with self._lock:  # nothing from the monitor may land after the outcome
            self._done = True
            try:
                self.store.finish_run(self.run, pid=os.getpid(), pid_start=_own_start())
            except StoreError as exc:
                # the run itself went well or badly on its own: say so, and keep its outcome
                import logging

                logging.getLogger("flowstage.store").warning(
                    "run %s is not in the history: %s", self.run.id, exc
                )

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
        import logging

        log = logging.getLogger("flowstage.store")
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
