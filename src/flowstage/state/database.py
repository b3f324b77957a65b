"""The SQLite file under the store: connections, transactions, schema migrations.

One file, ``<app dir>/flowstage.db``, created on first use; no server. WAL mode lets
readers go on while a process writes, and every write starts with ``BEGIN IMMEDIATE``
so that a writer waits for another (up to ``store.busy_timeout``) instead of failing
the way a read transaction upgraded to a write does. The schema version lives in
``PRAGMA user_version``; ``MIGRATIONS[n]`` takes a store from version ``n`` to ``n + 1``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowstage.core.appdir import PRIVATE_FILE, create_private, private_dir
from flowstage.core.errors import StoreError
from flowstage.core.settings import StoreSettings

if TYPE_CHECKING:
    import sqlite3

    from flowstage.core.models import ConfigResource

DB_NAME = "flowstage.db"
SCHEMA_VERSION = 4

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
    (  # 1 -> 2: runs retry
        "ALTER TABLE runs ADD COLUMN retry_of TEXT",
        # JSON: the workflow's reference and config, and the kept stage outputs
        "ALTER TABLE runs ADD COLUMN outputs TEXT",
    ),
    (  # 2 -> 3: the slots schedule rules fired (a slot is claimed once, across restarts)
        """CREATE TABLE trigger_fires (
            rule TEXT NOT NULL,
            slot TEXT NOT NULL,
            fired_at TEXT NOT NULL,
            outcome TEXT NOT NULL,
            run_id TEXT,
            PRIMARY KEY (rule, slot)
        )""",
    ),
    (  # 3 -> 4: the dashboard's run filters, each paged newest first by seq
        "CREATE INDEX runs_by_state ON runs (state, seq)",
        "CREATE INDEX runs_by_source ON runs (source, seq)",
        # newest first by seq, with the time to check: a time filter reads no other row
        "CREATE INDEX runs_by_created ON runs (seq, created_at)",
    ),
]


# SQLite's primary result codes (https://www.sqlite.org/rescode.html)
_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_CORRUPT = 3, 8, 10, 11
_SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_MISMATCH, _SQLITE_RANGE, _SQLITE_NOTADB = 13, 14, 20, 25, 26


#: less free space than this after an I/O error: the disk is full (a few SQLite pages)
_FULL_BELOW = 64 * 1024


def _is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class Database:
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

        private_dir(self.path.parent)
        self._make_private()
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

    def _make_private(self) -> None:
        """The database file 0600 before SQLite opens it: SQLite gives its ``-wal`` and
        ``-shm`` files the database file's mode."""
        with contextlib.suppress(OSError):  # SQLite itself reports why it cannot open it
            os.close(create_private(self.path, os.O_RDWR | os.O_CREAT))
        for suffix in ("-wal", "-shm"):  # left by an older flowstage with wider modes
            with contextlib.suppress(OSError):
                os.chmod(f"{self.path}{suffix}", PRIVATE_FILE)

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
                    f"{self.path}: the store has schema version {version}, "
                    "newer than this flowstage "
                    f"understands ({SCHEMA_VERSION}); upgrade flowstage, or set FLOWSTAGE_HOME to "
                    "another folder"
                )
                raise StoreError(msg)
            if version == 0:
                tables = [
                    r[0]
                    for r in conn.execute(
                        "SELECT name FROM sqlite_master "
                        "WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                    )
                ]
                if tables:
                    msg = (
                        f"{self.path}: not a flowstage store "
                        f"(it holds tables {', '.join(sorted(tables))} "
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
        """What went wrong, in words that fit: only a damaged file is called corrupt (the
        advice to move it away must never reach a store that is merely read-only or full)."""
        if _is_busy(exc):
            msg = (
                f"{self.path}: another process kept the store busy for more than "
                f"{self.settings.busy_timeout:g}s; try again, or raise store.busy_timeout"
            )
            return StoreError(msg)
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        text = str(exc).lower()
        if code == _SQLITE_FULL or "disk is full" in text or self._disk_full(code):
            msg = (
                f"{self.path}: the disk holding the store is full ({exc}); nothing was "
                "written: free some space (`flowstage runs prune` removes old runs) and try again"
            )
        elif code in (_SQLITE_READONLY, _SQLITE_CANTOPEN, _SQLITE_PERM) or "readonly" in text:
            msg = (
                f"{self.path}: cannot open or write the store ({exc}): permission denied or a "
                f"read-only filesystem; check that you can write {self.path} and its folder "
                "(the store itself is not damaged)"
            )
        elif code in (_SQLITE_MISMATCH, _SQLITE_RANGE) or isinstance(exc, OverflowError):
            msg = f"{self.path}: a value is out of the range the store can hold ({exc})"
        elif code in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or "malformed" in text:
            msg = (
                f"{self.path}: the file is corrupt or not a flowstage database ({exc}); move "
                "it away to start a new store, or restore a backup"
            )
        else:
            msg = f"{self.path}: the store failed: {type(exc).__name__}: {exc}"
        return StoreError(msg)

    def _disk_full(self, code: int) -> bool:
        """Whether an I/O error is a full disk: SQLite reports a write to the ``-wal`` or
        ``-shm`` file that found no space as a plain ``disk I/O error``."""
        if code != _SQLITE_IOERR:
            return False
        try:
            return shutil.disk_usage(self.path.parent).free < _FULL_BELOW
        except OSError:
            return False

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
