"""Where artifacts live: a folder or bucket behind fsspec, written atomically."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from flowstage.core.appdir import create_private, private_dir
from flowstage.core.errors import ObjectNotFound, ObjectStoreError
from flowstage.storage.pickling import type_name, unpicklable
from flowstage.storage.serializers import get_serializer

MANIFEST = ".artifact.json"
#: the folder under the root that holds the stage cache (no artifacts in it)
CACHE_FOLDER = ".flowstage-cache"
#: what ``store_object`` names a value file; a manifest naming anything else is refused
_VALUE_FILE = re.compile(r"\.value-[0-9a-f]{32}\.[A-Za-z0-9_]{1,16}")
#: filesystems where one upload either lands whole or not at all
_WHOLE_UPLOADS = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "memory"}
#: artifacts share this many lock files per location (a bounded number of empty files)
_LOCK_STRIPES = 256
#: orphaned value files (a writer that died) are swept once they are this old
_ORPHAN_AGE = 3600.0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Location:
    """An fsspec filesystem and the root folder of the artifacts in it."""

    _cache: ClassVar[dict[str, Location]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, url: str, options: Mapping[str, Any]) -> None:
        # lazy: fsspec is slow to import; only an artifact location needs it
        from fsspec.core import url_to_fs
        from fsspec.implementations.local import LocalFileSystem

        try:
            fs, root = url_to_fs(url, **dict(options))
        except Exception as exc:  # noqa: BLE001 - any fsspec backend's own error, reported as ours
            msg = f"artifacts.url {url!r}: cannot open the filesystem: {type(exc).__name__}: {exc}"
            raise ObjectStoreError(msg) from None
        self.url = url
        self.fs = fs
        self.local = isinstance(fs, LocalFileSystem)
        self.root = root.rstrip("/") or "/"
        protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
        self.whole_uploads = bool(protocols & _WHOLE_UPLOADS)

    @classmethod
    def get(cls, url: str, options: Mapping[str, Any]) -> Location:
        key = json.dumps([url, options], sort_keys=True, default=str)
        found = cls._cache.get(key)
        if found is None:
            with cls._lock:
                found = cls._cache.get(key) or cls(url, options)
                cls._cache[key] = found
        return found

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def uri(self, path: str) -> str:
        if self.local:
            return "file://" + path
        return str(self.fs.unstrip_protocol(path))

    # file primitives: FileNotFoundError passes through, any other failure is wrapped

    def read_bytes(self, path: str) -> bytes:
        if self.local:
            with open(path, "rb") as f:
                return f.read()
        return bytes(self.fs.cat_file(path))

    def open_read(self, path: str) -> Any:
        return open(path, "rb") if self.local else self.fs.open(path, "rb")

    @contextlib.contextmanager
    def write_atomic(self, path: str) -> Iterator[BinaryIO]:
        """A binary file that appears under ``path`` whole, when the block ends without error."""
        if self.local:
            folder = os.path.dirname(path)
            private_dir(Path(folder))
            temp = os.path.join(folder, f".tmp-{uuid.uuid4().hex}")
            try:
                with os.fdopen(create_private(temp), "wb") as f:
                    yield f
                os.replace(temp, path)
            except BaseException:
                _unlink(temp)
                raise
            return
        buffer = io.BytesIO()
        yield buffer
        data = buffer.getvalue()
        if self.whole_uploads:
            self.fs.pipe_file(path, data)
        else:  # a filesystem with real files: write a temporary one, then move it
            temp = f"{path.rsplit('/', 1)[0]}/.tmp-{uuid.uuid4().hex}"
            try:
                self.fs.pipe_file(temp, data)
                self.fs.mv(temp, path)
            except BaseException:
                with contextlib.suppress(Exception):
                    self.fs.rm_file(temp)
                raise

    @contextlib.contextmanager
    def write_new(self, path: str) -> Iterator[BinaryIO]:
        """A file under a name nobody reads yet (it needs no rename); removed on failure."""
        if not self.local:
            with self.write_atomic(path) as f:
                yield f
            return
        private_dir(Path(os.path.dirname(path)))
        try:
            with os.fdopen(create_private(path), "wb") as f:
                yield f
        except BaseException:
            _unlink(path)
            raise

    def remove(self, path: str) -> bool:
        try:
            if self.local:
                os.unlink(path)
            else:
                self.fs.rm_file(path)
            return True
        except FileNotFoundError:
            return False

    def exists(self, path: str) -> bool:
        return os.path.exists(path) if self.local else bool(self.fs.exists(path))

    def list_dir(self, path: str) -> list[dict[str, Any]]:
        """Files directly in ``path``: ``{"name", "size", "mtime"}``."""
        out = []
        if self.local:
            try:
                entries = list(os.scandir(path))
            except FileNotFoundError:
                return []
            for entry in entries:
                if entry.is_file():
                    stat = entry.stat()
                    out.append({"name": entry.name, "size": stat.st_size, "mtime": stat.st_mtime})
            return out
        self.fs.invalidate_cache(path)
        try:
            listed = self.fs.ls(path, detail=True)
        except FileNotFoundError:
            return []
        for info in listed:
            if info.get("type") == "file":
                modified = info.get("LastModified") or info.get("mtime") or info.get("created")
                mtime = (
                    modified.timestamp() if isinstance(modified, datetime) else float(modified or 0)
                )
                out.append(
                    {
                        "name": info["name"].rstrip("/").rsplit("/", 1)[-1],
                        "size": info.get("size") or 0,
                        "mtime": mtime,
                    }
                )
        return out

    def remove_empty_dirs(self, path: str, stop: str) -> None:
        """Remove ``path`` and its parents up to ``stop`` while they are empty (local disks)."""
        if not self.local:
            return
        while path.startswith(stop + "/"):
            try:
                os.rmdir(path)
            except OSError:
                return
            path = os.path.dirname(path)

    def manifests(self, namespace: str | None) -> list[tuple[str, str]]:
        """``(namespace, name)`` of every artifact under the root (or one namespace)."""
        base = self.root if namespace is None else self.path(namespace)
        found: list[str] = []
        if self.local:
            for folder, dirs, files in os.walk(base):
                dirs[:] = [d for d in dirs if not d.startswith(".tmp-") and d != CACHE_FOLDER]
                if MANIFEST in files:
                    found.append(folder)
        else:
            self.fs.invalidate_cache(base)
            try:
                paths = self.fs.find(base)
            except FileNotFoundError:
                paths = []
            found = [p.rsplit("/", 1)[0] for p in paths if p.rsplit("/", 1)[-1] == MANIFEST]
            base = self.fs._strip_protocol(base).rstrip("/")
        out = []
        for folder in found:
            relative = (
                folder[len(base.rstrip("/")) + 1 :]
                if folder.startswith(base.rstrip("/") + "/")
                else ""
            )
            if namespace is not None:
                relative = f"{namespace}/{relative}"
            ns, _, name = relative.partition("/")
            if ns and name:
                out.append((ns, name))
        return sorted(out)

    # manifests and objects -------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, namespace: str, name: str) -> Iterator[None]:
        """Hold artifact ``name``'s lock, so that one writer at a time reads, changes and
        writes its manifest (threads and processes alike: ``flock`` on a file of its own).

        Local disks only: fsspec offers object stores no conditional write, so there the
        last writer of a manifest wins. Never nest: two artifacts may share a lock file.
        """
        if not self.local:
            yield
            return
        stripe = hashlib.sha256(f"{namespace}/{name}".encode()).digest()[0] % _LOCK_STRIPES
        folder = self.path(".locks")  # a namespace never starts with '.'
        private_dir(Path(folder))
        fd = create_private(f"{folder}/{stripe:02x}.lock", os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # which releases the lock

    def read_manifest(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            data = self.read_bytes(self.path(namespace, name, MANIFEST))
        except FileNotFoundError:
            return None
        try:
            manifest = json.loads(data)
        except ValueError as exc:
            msg = f"{self.uri(self.path(namespace, name, MANIFEST))} is not valid JSON: {exc}"
            raise ObjectStoreError(msg) from None
        if not isinstance(manifest, dict):
            return None
        _check_manifest(manifest, f"artifact {name!r} in namespace {namespace!r}")
        return manifest

    def write_manifest(self, namespace: str, name: str, manifest: dict[str, Any]) -> None:
        data = json.dumps(manifest, indent=1, sort_keys=True).encode()
        with self.write_atomic(self.path(namespace, name, MANIFEST)) as f:
            f.write(data)

    @contextlib.contextmanager
    def errors(self, action: str, where: str) -> Iterator[None]:
        """Turn storage failures (full disk, unreachable endpoint, ...) into one clear error."""
        try:
            yield
        except (ObjectStoreError, ObjectNotFound, FileNotFoundError, FileExistsError, KeyError):
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, OSError) and exc.errno == 28:
                reason = f"no space left on the device ({exc})"
            msg = f"{action} at {self.url} failed in {where}: {reason}; nothing was changed"
            raise ObjectStoreError(msg) from exc

    def store_object(
        self, namespace: str, key: str, value: Any, serializer: Any, where: str
    ) -> int:
        """Write ``value`` as artifact ``key``'s object; its size in bytes."""
        chosen = get_serializer(serializer)
        folder = self.path(namespace, key)
        file = f".value-{uuid.uuid4().hex}.{chosen.extension}"
        action = f"writing object {key!r} in namespace {namespace!r}"
        with self.errors(action, where), self.locked(namespace, key):
            old = self.read_manifest(namespace, key)
            path = f"{folder}/{file}"
            try:
                size = self._write_value(path, chosen, value, key, where)
            except BaseException:
                self._drop_new_folder(old, folder)
                raise
            stamp = _now()
            manifest = old or {
                "name": key,
                "namespace": namespace,
                "created_at": stamp,
                "metadata": {},
            }
            previous = (manifest.get("object") or {}).get("file")
            manifest["object"] = {
                "file": file,
                "serializer": chosen.name,
                "size": size,
                "type": type_name(value),
                "stored_at": stamp,
            }
            manifest["updated_at"] = stamp
            try:
                self.write_manifest(namespace, key, manifest)
            except BaseException:
                self.remove(path)
                self._drop_new_folder(old, folder)
                raise
        with contextlib.suppress(Exception):  # leftovers never change what get returns
            if previous:
                self.remove(f"{folder}/{previous}")
            self._sweep(folder, keep=file)
        return size

    def _write_value(self, path: str, chosen: Any, value: Any, key: str, where: str) -> int:
        """Write ``value`` to the new file ``path``; its size in bytes."""
        with self.write_new(path) as f:
            try:
                chosen.dump(value, f)
            except OSError:
                raise
            except Exception as exc:  # noqa: BLE001 - a serializer may raise anything for a value it cannot write
                raise unpicklable(key, where, value, exc, chosen.name) from None
            return f.tell()

    def _drop_new_folder(self, manifest: dict[str, Any] | None, folder: str) -> None:
        """After a failed first write of an artifact (no ``manifest`` yet), remove the
        folder it created, so that a full disk or a bad value leaves nothing behind. Only
        the artifact's own folder, under its lock: the namespace's is shared."""
        if manifest is None:
            self.remove_empty_dirs(folder, os.path.dirname(folder))

    def _sweep(self, folder: str, keep: str) -> None:
        """Remove value and temporary files that writers which died left behind."""
        limit = time.time() - _ORPHAN_AGE
        for entry in self.list_dir(folder):
            name = entry["name"]
            if name != keep and name.startswith((".value-", ".tmp-")) and entry["mtime"] < limit:
                self.remove(f"{folder}/{name}")

    def load_object(self, namespace: str, key: str, where: str) -> Any:
        """The object of artifact ``key``. :raises KeyError: there is none"""
        action = f"reading object {key!r} in namespace {namespace!r}"
        with self.errors(action, where):
            missing = ""
            for _ in range(5):
                manifest = self.read_manifest(namespace, key)
                info = (manifest or {}).get("object")
                if not info:
                    raise KeyError(key)
                missing = info["file"]
                serializer = get_serializer(info.get("serializer"))
                try:
                    with self.open_read(self.path(namespace, key, info["file"])) as f:
                        return serializer.load(f)
                except FileNotFoundError:  # replaced by another writer meanwhile: look again
                    continue
            msg = (
                f"object {key!r} in namespace {namespace!r}: its value file {missing!r} is missing"
            )
            raise ObjectStoreError(msg)

    def delete_object(self, namespace: str, key: str, where: str) -> bool:
        """Remove artifact ``key``'s object (and the artifact, if nothing else is in it)."""
        action = f"deleting object {key!r} in namespace {namespace!r}"
        with self.errors(action, where), self.locked(namespace, key):
            manifest = self.read_manifest(namespace, key)
            if not manifest or not manifest.get("object"):
                return False
            info = manifest.pop("object")
            folder = self.path(namespace, key)
            others = [e for e in self.list_dir(folder) if not _internal(e["name"])]
            if others or manifest.get("metadata"):
                self.write_manifest(namespace, key, manifest)
                self.remove(f"{folder}/{info['file']}")
            else:
                self._remove_files(namespace, key)
            return True

    def _remove_artifact(self, namespace: str, name: str) -> None:
        with self.locked(namespace, name):
            self._remove_files(namespace, name)

    def _remove_files(self, namespace: str, name: str) -> None:
        """The manifest goes first: from then on the artifact does not exist."""
        folder = self.path(namespace, name)
        self.remove(f"{folder}/{MANIFEST}")
        for entry in self.list_dir(folder):
            self.remove(f"{folder}/{entry['name']}")
        self.remove_empty_dirs(folder, self.root)

    def object_entries(self, namespace: str | None, where: str) -> list[dict[str, Any]]:
        out = []
        with self.errors("listing objects", where):
            for ns, name in self.manifests(namespace):
                info = (self.read_manifest(ns, name) or {}).get("object")
                if info:
                    out.append(
                        {
                            "namespace": ns,
                            "key": name,
                            "size": info.get("size"),
                            "type": info.get("type"),
                            "serializer": info.get("serializer"),
                            "stored_at": info.get("stored_at"),
                        }
                    )
        return out

    def clear_objects(self, namespace: str | None, where: str) -> int:
        return sum(
            self.delete_object(e["namespace"], e["key"], where)
            for e in self.object_entries(namespace, where)
        )


def _check_manifest(manifest: dict[str, Any], artifact: str) -> None:
    """Refuse a manifest whose file names could point outside the artifact's folder.

    ``object.file`` is the one field that names a file; flowstage writes it as
    ``.value-<hex>.<extension>``, and anything else (``../../x``, ``/etc/passwd``, a name
    with ``/``) means someone else wrote the manifest: reading or removing that file
    would reach outside the store.
    """
    info = manifest.get("object")
    if info is None:
        return
    problem = ""
    if not isinstance(info, dict):
        field, found = "object", info
        problem = "expected a mapping"
    else:
        field, found = "object.file", info.get("file")
        if not isinstance(found, str) or not _VALUE_FILE.fullmatch(found):
            problem = "expected a value file name such as '.value-<32 hex digits>.pkl'"
    if problem:
        msg = (
            f"{artifact}: {MANIFEST} field {field!r} is {found!r}: {problem} in the "
            f"artifact's own folder; the manifest was not written by flowstage, so nothing "
            f"was read or removed (remove the artifact to start again)"
        )
        raise ObjectStoreError(msg)


def _internal(name: str) -> bool:
    return name == MANIFEST or name.startswith((".tmp-", ".value-"))


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
