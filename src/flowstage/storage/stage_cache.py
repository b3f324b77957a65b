"""The stage cache's entries, kept in the artifact store.

Entries live at ``<artifacts.url>/.flowstage-cache/<key[:2]>/<key>`` (outside every
namespace: a key already says everything about the call, and two runs in different
namespaces computing the same thing share it). With an ``s3://`` artifact URL, every
machine using that URL shares the cache.

An entry is one file, written atomically: a magic line, a JSON header line (stage,
workflow, target, created, expires, payload size and digest), then the cloudpickled
value. A file that does not parse, or whose payload does not match its header, is a
miss with a warning; the next run that computes the value writes the entry again.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import hashlib
import json
import logging
import os
import pickle
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flowstage.core.appdir import create_private, private_dir
from flowstage.core.errors import UserError
from flowstage.storage.location import CACHE_FOLDER, Location
from flowstage.storage.pickling import type_name

log = logging.getLogger("flowstage.cache")

_MAGIC = b"flowstage-cache 1\n"
#: reads of a remote store at once
_READERS = 16
#: entries of a run that may fail to be read or written (each a miss with a warning)
#: before the store is set aside for the rest of the run
_ENTRY_FAILURES = 5
#: errors that are the whole store's, whichever entry met them
_STORE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENOTCONN, errno.ENETUNREACH}
)


class CorruptEntry(Exception):
    """An entry's bytes are not what flowstage wrote (cut short, overwritten)."""


def encode_entry(value: Any, info: Mapping[str, Any]) -> bytes:
    """An entry's bytes: magic line, header line, payload.

    :raises Exception: the value cannot be pickled (whatever cloudpickle raised)
    """
    # cloudpickle, not pickle: classes and functions of a script (``__main__``) are
    # pickled by value, so another process can read them. Imported lazily: it takes
    # about 75 ms, which `flowstage cache ls` and runs without a cached stage never need
    import cloudpickle

    payload: bytes = cloudpickle.dumps(value, protocol=5)
    created = time.time()
    expire = info.get("expire")
    header = {
        **{k: v for k, v in info.items() if k != "expire"},
        "type": type_name(value),
        "created": created,
        "expires": None if expire is None else created + float(expire),
        "size": len(payload),
        "digest": hashlib.blake2b(payload, digest_size=16).hexdigest(),
    }
    return _MAGIC + json.dumps(header).encode() + b"\n" + payload


def decode_header(data: bytes) -> tuple[dict[str, Any], int]:
    """``(header, offset of the payload)`` of an entry's bytes (or its first part).

    :raises CorruptEntry: not an entry's bytes
    """
    if not data.startswith(_MAGIC):
        raise CorruptEntry("it does not start like a flowstage cache entry")
    end = data.find(b"\n", len(_MAGIC))
    if end < 0:
        raise CorruptEntry("its header is cut short")
    try:
        header = json.loads(data[len(_MAGIC) : end])
    except ValueError as exc:
        raise CorruptEntry(f"its header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise CorruptEntry("its header is not a mapping")
    return header, end + 1


def decode_entry(data: bytes) -> tuple[dict[str, Any], Any]:
    """``(header, value)`` of an entry's bytes.

    :raises CorruptEntry: the bytes are not a whole entry
    """
    header, start = decode_header(data)
    payload = data[start:]
    if len(payload) != header.get("size"):
        raise CorruptEntry(f"its payload has {len(payload)} bytes, not {header.get('size')}")
    if hashlib.blake2b(payload, digest_size=16).hexdigest() != header.get("digest"):
        raise CorruptEntry("its payload does not match its digest")
    try:
        return header, pickle.loads(payload)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure makes it a miss
        raise CorruptEntry(f"its value does not unpickle: {type(exc).__name__}: {exc}") from None


def is_expired(header: Mapping[str, Any], now: float) -> bool:
    """Whether an entry has expired: its ``expires`` (``created`` plus the stage's
    ``expire`` when it was written) has passed. The one rule of runs, ``cache ls`` and
    ``cache clear --expired``; an entry without expiry never expires, one whose expiry
    is not a number has."""
    expires = header.get("expires")
    if expires is None:
        return False
    return not isinstance(expires, (int, float)) or expires <= now


class ArtifactCacheStore:
    """A :class:`~flowstage.core.caching.CacheStore` under an artifact location."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self.remote = not location.local
        self.root = location.path(CACHE_FOLDER)
        #: why the store cannot be used (set by a failure of the whole store, or after
        #: repeated failures of entries): the rest of the run goes without it, instead
        #: of waiting on every entry and warning for each
        self.broken: str | None = None
        self._entry_failures = 0
        self._lock = threading.Lock()

    def _break(self, action: str, exc: BaseException) -> None:
        if self.broken is None:
            self.broken = f"{_name(exc)}: {exc}"
            log.warning(
                "the stage cache at %s cannot be %s (%s): this run goes on without it",
                self.location.uri(self.root),
                action,
                self.broken,
            )

    def _failed(self, action: str, path: str, exc: BaseException) -> None:
        """An entry could not be read or written: a miss (or not stored) with a warning,
        unless the error is the whole store's or entries keep failing."""
        with self._lock:
            self._entry_failures += 1
            repeated = self._entry_failures > _ENTRY_FAILURES
        if repeated or self._store_failed(exc):
            self._break(action, exc)
            return
        outcome = "a miss" if action == "read" else "not stored"
        where = self.location.uri(path)
        log.warning("cache entry %s cannot be %s (%s): %s", where, action, _reason(exc), outcome)

    def _store_failed(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a failure of the store, not of one entry: anything that is
        not an OSError (a client's own errors), a connection or timeout, a full or
        read-only disk, or a local root that is not a folder."""
        if not isinstance(exc, OSError) or isinstance(exc, (ConnectionError, TimeoutError)):
            return True
        if exc.errno in _STORE_ERRNOS:
            return True
        return self.location.local and os.path.exists(self.root) and not os.path.isdir(self.root)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> ArtifactCacheStore:
        """The store at ``{"url", "options"}`` (the run's ``artifacts`` settings)."""
        return cls(Location.get(settings["url"], settings.get("options") or {}))

    def path(self, key: str) -> str:
        """Where the entry of ``key`` lives: ``<root>/<key[:2]>/<key>``.

        :raises UserError: ``key`` is not a cache key (at least 8 lowercase hex digits)
        """
        if len(key) < 8 or not all(c in "0123456789abcdef" for c in key):
            msg = f"{key!r} is not a cache key (hex digits, as `flowstage cache ls` shows)"
            raise UserError(msg)
        return f"{self.root}/{key[:2]}/{key}"

    # -- the run's side ---------------------------------------------------------------

    def load_many(self, keys: Sequence[str]) -> dict[int, Any]:
        """Found values by position; missing, expired and corrupt entries are misses."""
        if self.remote and len(keys) > 1:
            with concurrent.futures.ThreadPoolExecutor(min(_READERS, len(keys))) as pool:
                values = list(pool.map(self._load, keys))
        else:
            values = [self._load(key) for key in keys]
        return {i: value[0] for i, value in enumerate(values) if value is not None}

    def read_size(self, keys: Sequence[str]) -> int:
        """The bytes of the entries of ``keys`` on a local disk (a stat each; missing or
        unreadable ones count 0)."""
        size = 0
        for key in keys:
            with contextlib.suppress(OSError):
                size += os.stat(self.path(key)).st_size
        return size

    def _load(self, key: str) -> tuple[Any] | None:
        if self.broken is not None:
            return None
        path = self.path(key)
        try:
            data = self.location.read_bytes(path)
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001 - an unreadable entry is a miss, not a failure
            self._failed("read", path, exc)
            return None
        try:
            header, value = decode_entry(data)
        except CorruptEntry as exc:
            where = self.location.uri(path)
            log.warning("cache entry %s is corrupt (%s): a miss; it will be rewritten", where, exc)
            return None
        if is_expired(header, time.time()):
            return None
        return (value,)

    def save(self, key: str, value: Any, info: Mapping[str, Any]) -> None:
        """Write the entry atomically; a value that cannot be pickled or a store that
        cannot be written is logged and skipped."""
        if self.broken is not None:
            return
        try:
            data = encode_entry(value, info)
        except Exception as exc:  # noqa: BLE001 - a value's own __reduce__ may raise anything
            log.warning(
                "stage %r: its result (a %s) cannot be pickled, so it is not cached: %s: %s",
                info.get("stage"),
                type_name(value),
                type(exc).__name__,
                exc,
            )
            return
        path = self.path(key)
        try:
            self._write(path, data)
        except Exception as exc:  # noqa: BLE001 - a full or unreachable store is not a failure
            self._failed("written", path, exc)

    def _write(self, path: str, data: bytes) -> None:
        """``data`` under ``path``, whole or not at all. On a local disk the folder is
        made only when the file cannot be created (most writes go to one that exists:
        this halves a write's cost, most of a miss's)."""
        if not self.location.local:
            with self.location.write_atomic(path) as f:
                f.write(data)
            return
        folder = os.path.dirname(path)
        temp = f"{folder}/.tmp-{uuid.uuid4().hex}"
        try:
            fd = create_private(temp)
        except FileNotFoundError:  # the first entry of its folder
            private_dir(Path(folder))
            fd = create_private(temp)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    # -- listing and removing -----------------------------------------------------------

    def entries(self) -> list[dict[str, Any]]:
        """Every entry's header, with ``key``, ``size`` (of the file) and ``corrupt`` (a
        reason, or None)."""
        out = []
        for folder in self._folders():
            for item in self.location.list_dir(f"{self.root}/{folder}"):
                name = item["name"]
                if name.startswith("."):
                    continue  # a write in progress
                row: dict[str, Any] = {"key": name, "file_size": item["size"], "corrupt": None}
                try:
                    header, _ = decode_header(self._head(f"{self.root}/{folder}/{name}"))
                    row.update(header)
                except CorruptEntry as exc:
                    row["corrupt"] = str(exc)
                except FileNotFoundError:
                    continue  # removed meanwhile
                except OSError as exc:  # a folder in its place, an unreadable file
                    row["corrupt"] = f"it cannot be read ({_reason(exc)})"
                out.append(row)
        return sorted(out, key=lambda r: r.get("created") or 0)

    def _folders(self) -> list[str]:
        if self.location.local:
            try:
                return sorted(e.name for e in os.scandir(self.root) if e.is_dir())
            except FileNotFoundError:
                return []
        fs = self.location.fs
        fs.invalidate_cache(self.root)
        try:
            listed = fs.ls(self.root, detail=True)
        except FileNotFoundError:
            return []
        return sorted(
            i["name"].rstrip("/").rsplit("/", 1)[-1] for i in listed if i.get("type") == "directory"
        )

    def _head(self, path: str) -> bytes:
        with self.location.open_read(path) as f:
            data: bytes = f.read(64 * 1024)
        return data

    def remove(self, key: str) -> bool:
        """Remove one entry; whether it was there."""
        return self.location.remove(self.path(key))


def _name(exc: BaseException) -> str:
    return type(exc).__name__


def _reason(exc: BaseException) -> str:
    """``"IsADirectoryError: Is a directory"``: an OSError without the paths its message
    repeats (the warning names the entry)."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{_name(exc)}: {exc.strerror}"
    return f"{_name(exc)}: {exc}"
