"""Artifacts: named, persistent folders of files with key-value metadata, through fsspec.

::

    from flowstage.storage.artifacts import new_artifact, get_artifact, list_artifacts

    model = new_artifact("model-v1", metadata={"score": 0.93})
    model.new_file("weights.bin", b"...")          # written atomically
    model["trained_on"] = "2024-05-01"              # metadata, kept in .artifact.json
    get_artifact("model-v1").get_file("weights.bin").read()

Artifacts live under the ``artifacts.url`` setting (any fsspec URL: ``s3://bucket/prefix``
with ``artifacts.options`` for the filesystem; default ``file://<app dir>/artifacts``),
at ``<url>/<namespace>/<name>/``. Inside a run the namespace is the run's, else
``default``. ``object_store.put(..., strategy="artifact")`` stores a value as an artifact
of the key's name.

Every write is atomic: a file is written under a temporary name and renamed (local
disks), or uploaded in one request that only completes whole (object stores such as S3),
so a crash never leaves a half-written file under its real name. An object's value is
written to a new file first, and only then does ``.artifact.json`` point at it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from typing import Any, BinaryIO, ClassVar

from flowstage.core.errors import ObjectNotFound
from flowstage.storage.object_store import (
    ObjectStoreError,
    type_name,
    unpicklable,
    validate_key,
    validate_namespace,
)

__all__ = [
    "Artifact",
    "ArtifactFile",
    "Serializer",
    "get_artifact",
    "get_serializer",
    "list_artifacts",
    "list_namespaces",
    "new_artifact",
    "register_serializer",
    "remove_artifact",
]

MANIFEST = ".artifact.json"
#: filesystems where one upload either lands whole or not at all
_WHOLE_UPLOADS = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "memory"}
#: orphaned value files (a writer that died) are swept once they are this old
_ORPHAN_AGE = 3600.0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# serializers -----------------------------------------------------------------------


class Serializer:
    """How an object becomes a file. Subclass, set ``name`` and ``extension``, and
    :func:`register_serializer` it in every process that reads or writes it."""

    name: ClassVar[str] = ""
    extension: ClassVar[str] = "bin"

    def dump(self, value: Any, file: BinaryIO) -> None:
        raise NotImplementedError

    def load(self, file: BinaryIO) -> Any:
        raise NotImplementedError


class CloudpickleSerializer(Serializer):
    """The default: any picklable object, closures and classes included."""

    name = "cloudpickle"
    extension = "pkl"

    def dump(self, value: Any, file: BinaryIO) -> None:
        import cloudpickle

        cloudpickle.dump(value, file, protocol=5)

    def load(self, file: BinaryIO) -> Any:
        import pickle

        return pickle.load(file)


class JsonSerializer(Serializer):
    """Plain data, readable by any tool."""

    name = "json"
    extension = "json"

    def dump(self, value: Any, file: BinaryIO) -> None:
        file.write(json.dumps(value).encode())

    def load(self, file: BinaryIO) -> Any:
        return json.loads(file.read())


class _ArrowBase(Serializer):
    """pandas DataFrames and pyarrow Tables (a DataFrame comes back as a DataFrame)."""

    @staticmethod
    def _table(value: Any) -> Any:
        import pyarrow as pa

        if isinstance(value, pa.Table):
            return value
        if type(value).__module__.startswith("pandas"):
            return pa.Table.from_pandas(value)
        raise TypeError(
            f"the parquet and arrow serializers write pandas DataFrames or pyarrow Tables, "
            f"not {type_name(value)}"
        )

    @staticmethod
    def _value(table: Any) -> Any:
        return table.to_pandas() if table.schema.pandas_metadata else table


class ParquetSerializer(_ArrowBase):
    name = "parquet"
    extension = "parquet"

    def dump(self, value: Any, file: BinaryIO) -> None:
        import pyarrow.parquet as pq

        pq.write_table(self._table(value), file)

    def load(self, file: BinaryIO) -> Any:
        import pyarrow.parquet as pq

        return self._value(pq.read_table(file))


class ArrowSerializer(_ArrowBase):
    """Arrow IPC files: fast to write and to read, larger than Parquet."""

    name = "arrow"
    extension = "arrow"

    def dump(self, value: Any, file: BinaryIO) -> None:
        import pyarrow as pa

        table = self._table(value)
        with pa.ipc.new_file(file, table.schema) as writer:
            writer.write_table(table)

    def load(self, file: BinaryIO) -> Any:
        import pyarrow as pa

        return self._value(pa.ipc.open_file(file).read_all())


_serializers: dict[str, Serializer] = {
    s.name: s
    for s in (CloudpickleSerializer(), JsonSerializer(), ParquetSerializer(), ArrowSerializer())
}


def register_serializer(serializer: Serializer, *, replace: bool = False) -> Serializer:
    """Make ``serializer`` usable by name in this process.

    :raises ObjectStoreError: another serializer has that name (unless ``replace``)
    """
    if not serializer.name:
        raise ObjectStoreError(f"serializer {serializer!r} has no name")
    known = _serializers.get(serializer.name)
    if (
        known is not None
        and known is not serializer
        and not replace
        and type(known) is not type(serializer)
    ):
        raise ObjectStoreError(
            f"a serializer named {serializer.name!r} is already registered ({known!r})"
        )
    _serializers[serializer.name] = serializer
    return serializer


def get_serializer(spec: str | Serializer | None) -> Serializer:
    """A serializer by name (``None``: cloudpickle) or an instance, registering it."""
    if spec is None:
        return _serializers["cloudpickle"]
    if isinstance(spec, Serializer):
        return register_serializer(spec)
    found = _serializers.get(spec)
    if found is None:
        msg = (
            f"unknown serializer {spec!r} (registered: {', '.join(sorted(_serializers))}; "
            f"custom ones need register_serializer() in every process that uses them)"
        )
        raise ObjectStoreError(msg)
    return found


# where artifacts live ----------------------------------------------------------------


class Location:
    """An fsspec filesystem and the root folder of the artifacts in it."""

    _cache: ClassVar[dict[str, Location]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, url: str, options: Mapping[str, Any]) -> None:
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
            os.makedirs(folder, exist_ok=True)
            temp = os.path.join(folder, f".tmp-{uuid.uuid4().hex}")
            try:
                with open(temp, "xb") as f:
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
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            with open(path, "xb") as f:
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
                dirs[:] = [d for d in dirs if not d.startswith(".tmp-")]
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
        return manifest if isinstance(manifest, dict) else None

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
        with self.errors(action, where):
            old = self.read_manifest(namespace, key)
            path = f"{folder}/{file}"
            with self.write_new(path) as f:
                try:
                    chosen.dump(value, f)
                except OSError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a serializer may raise anything for a value it cannot write
                    raise unpicklable(key, where, value, exc, chosen.name) from None
                size = f.tell()
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
                raise
        with contextlib.suppress(Exception):  # leftovers never change what get returns
            if previous:
                self.remove(f"{folder}/{previous}")
            self._sweep(folder, keep=file)
        return size

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
        with self.errors(action, where):
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
                self._remove_artifact(namespace, key)
            return True

    def _remove_artifact(self, namespace: str, name: str) -> None:
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


def _internal(name: str) -> bool:
    return name == MANIFEST or name.startswith((".tmp-", ".value-"))


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


# the artifact API -----------------------------------------------------------------------


def _file_name(name: str) -> str:
    validate_key(name, "artifact file name")
    if "/" in name:
        raise ObjectStoreError(f"invalid artifact file name {name!r}: it must not contain '/'")
    return name


class ArtifactFile:
    """One file of an artifact. Writes are atomic."""

    def __init__(self, artifact: Artifact, name: str) -> None:
        self.artifact = artifact
        self.name = _file_name(name)

    @property
    def path(self) -> str:
        return f"{self.artifact.path}/{self.name}"

    @property
    def uri(self) -> str:
        return self.artifact.location.uri(self.path)

    @property
    def exists(self) -> bool:
        return self.artifact.location.exists(self.path)

    @property
    def size(self) -> int:
        location = self.artifact.location
        return os.path.getsize(self.path) if location.local else int(location.fs.size(self.path))

    @contextlib.contextmanager
    def open(self, mode: str = "rb") -> Iterator[Any]:
        """Open for reading (``r``, ``rb``) or atomic writing (``w``, ``wb``): a written
        file replaces the old one only when the ``with`` block ends without an error."""
        location = self.artifact.location
        if mode in ("r", "rb"):
            with self.artifact._errors(f"reading {self.name!r}"):
                f = location.open_read(self.path)
            with f:
                yield io.TextIOWrapper(f, encoding="utf-8") if mode == "r" else f
        elif mode in ("w", "wb"):
            # Only storage failures are wrapped: the caller's own exceptions pass unchanged.
            action = f"writing {self.name!r}"
            writer = location.write_atomic(self.path)
            with self.artifact._errors(action):
                f = writer.__enter__()
            try:
                if mode == "w":
                    text = io.TextIOWrapper(f, encoding="utf-8", write_through=True)
                    yield text
                    text.detach()
                else:
                    yield f
            except BaseException:
                writer.__exit__(*sys.exc_info())  # the temporary file goes, the old one stays
                raise
            with self.artifact._errors(action):
                writer.__exit__(None, None, None)
        else:
            raise ObjectStoreError(
                f"artifact files open with mode 'r', 'rb', 'w' or 'wb', not {mode!r}"
            )

    def read(self, mode: str = "rb") -> Any:
        """The whole content: bytes (``rb``) or text (``r``)."""
        with self.artifact._errors(f"reading {self.name!r}"):
            data = self.artifact.location.read_bytes(self.path)
        return data.decode() if mode == "r" else data

    def write(self, data: str | bytes) -> None:
        """Replace the content, atomically."""
        payload = data.encode() if isinstance(data, str) else bytes(data)
        with (
            self.artifact._errors(f"writing {self.name!r}"),
            self.artifact.location.write_atomic(self.path) as f,
        ):
            f.write(payload)

    def remove(self) -> bool:
        """Delete this file; whether it existed."""
        with self.artifact._errors(f"removing {self.name!r}"):
            return self.artifact.location.remove(self.path)

    def __repr__(self) -> str:
        return f"ArtifactFile<{self.uri}>"


class Artifact:
    """A named folder of files with key-value metadata (JSON values) in ``.artifact.json``."""

    def __init__(self, name: str, namespace: str, location: Location) -> None:
        self.name = validate_key(name, "artifact name")
        self.namespace = validate_namespace(namespace)
        self.location = location

    @property
    def path(self) -> str:
        return self.location.path(self.namespace, self.name)

    @property
    def uri(self) -> str:
        return self.location.uri(self.path)

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        with self.location.errors(
            f"artifact {self.name!r} in namespace {self.namespace!r}: {action}", "this process"
        ):
            yield

    def _manifest(self) -> dict[str, Any]:
        with self._errors("reading its metadata"):
            manifest = self.location.read_manifest(self.namespace, self.name)
        if manifest is None:
            raise ObjectNotFound(
                f"artifact {self.name!r} in namespace {self.namespace!r} does not exist (any more)"
            )
        return manifest

    def _save(self, manifest: dict[str, Any]) -> None:
        manifest["updated_at"] = _now()
        with self._errors("writing its metadata"):
            self.location.write_manifest(self.namespace, self.name, manifest)

    # metadata

    @property
    def metadata(self) -> dict[str, Any]:
        """A copy of the metadata, read now."""
        return dict(self._manifest().get("metadata") or {})

    @property
    def object_info(self) -> dict[str, Any] | None:
        """What ``object_store.put`` stored here (``serializer``, ``size``, ``type``), if anything."""
        return self._manifest().get("object")

    def get_meta(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    def set_meta(self, key: str, value: Any) -> None:
        self.update_meta({key: value})

    def update_meta(self, values: Mapping[str, Any] | None = None, **more: Any) -> None:
        """Set several metadata keys at once (one write; the last writer wins)."""
        changes = {**(values or {}), **more}
        try:
            json.dumps(changes)
        except (TypeError, ValueError) as exc:
            raise ObjectStoreError(
                f"artifact {self.name!r}: metadata values must be JSON data: {exc}"
            ) from None
        manifest = self._manifest()
        manifest.setdefault("metadata", {}).update(changes)
        self._save(manifest)

    def del_meta(self, key: str) -> None:
        manifest = self._manifest()
        del manifest.setdefault("metadata", {})[key]
        self._save(manifest)

    def __getitem__(self, key: str) -> Any:
        return self.metadata[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.set_meta(key, value)

    def __delitem__(self, key: str) -> None:
        self.del_meta(key)

    # files

    def new_file(
        self, name: str, content: str | bytes | None = None, *, exist_ok: bool = False
    ) -> ArtifactFile:
        """Create file ``name`` (empty, or with ``content``), atomically.

        :raises FileExistsError: it exists and ``exist_ok`` is false
        """
        self._manifest()
        file = ArtifactFile(self, name)
        if not exist_ok and file.exists:
            raise FileExistsError(
                f"artifact {self.name!r} in namespace {self.namespace!r} already has file {name!r}"
            )
        file.write(b"" if content is None else content)
        return file

    def get_file(self, name: str) -> ArtifactFile:
        """:raises FileNotFoundError: the artifact has no such file"""
        file = ArtifactFile(self, name)
        if not file.exists:
            have = ", ".join(f.name for f in self.list_files()) or "none"
            msg = f"artifact {self.name!r} in namespace {self.namespace!r} has no file {name!r} (files: {have})"
            raise FileNotFoundError(msg)
        return file

    def has_file(self, name: str) -> bool:
        return ArtifactFile(self, name).exists

    def list_files(self) -> list[ArtifactFile]:
        with self._errors("listing its files"):
            entries = self.location.list_dir(self.path)
        return [
            ArtifactFile(self, e["name"])
            for e in sorted(entries, key=lambda e: e["name"])
            if not _internal(e["name"])
        ]

    def read(self, name: str, mode: str = "rb") -> Any:
        return self.get_file(name).read(mode)

    def write(self, name: str, data: str | bytes) -> ArtifactFile:
        """Write (create or replace) file ``name``, atomically."""
        self._manifest()
        file = ArtifactFile(self, name)
        file.write(data)
        return file

    def remove_file(self, name: str) -> bool:
        return ArtifactFile(self, name).remove()

    def remove(self) -> None:
        """Delete the artifact, its files and its metadata."""
        with self._errors("removing it"):
            self.location._remove_artifact(self.namespace, self.name)

    @property
    def exists(self) -> bool:
        return self.location.exists(f"{self.path}/{MANIFEST}")

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.has_file(name)

    def __iter__(self) -> Iterator[ArtifactFile]:
        return iter(self.list_files())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Artifact) and (self.name, self.namespace, self.location.url) == (
            other.name,
            other.namespace,
            other.location.url,
        )

    def __hash__(self) -> int:
        return hash((self.name, self.namespace, self.location.url))

    def __repr__(self) -> str:
        return f"Artifact<{self.uri}>"


def _scope(namespace: str | None) -> tuple[str, Location]:
    from flowstage.storage.object_store import _Scope

    scope = _Scope(namespace, None)
    return scope.namespace, scope.artifacts()


def new_artifact(
    name: str,
    namespace: str | None = None,
    *,
    metadata: Mapping[str, Any] | None = None,
    exist_ok: bool = False,
) -> Artifact:
    """Create artifact ``name`` in ``namespace`` (default: the run's, else ``default``).

    :raises FileExistsError: it exists and ``exist_ok`` is false
    """
    ns, location = _scope(namespace)
    artifact = Artifact(name, ns, location)
    with artifact._errors("creating it"):
        manifest = location.read_manifest(ns, name)
    if manifest is not None:
        if not exist_ok:
            raise FileExistsError(
                f"artifact {name!r} already exists in namespace {ns!r} ({artifact.uri})"
            )
        if metadata:
            artifact.update_meta(metadata)
        return artifact
    data = dict(metadata or {})
    try:
        json.dumps(data)
    except (TypeError, ValueError) as exc:
        raise ObjectStoreError(
            f"artifact {name!r}: metadata values must be JSON data: {exc}"
        ) from None
    stamp = _now()
    with artifact._errors("creating it"):
        location.write_manifest(
            ns,
            name,
            {
                "name": name,
                "namespace": ns,
                "created_at": stamp,
                "updated_at": stamp,
                "metadata": data,
            },
        )
    return artifact


def get_artifact(name: str, namespace: str | None = None) -> Artifact:
    """:raises ObjectNotFound: no artifact ``name`` in the namespace"""
    ns, location = _scope(namespace)
    artifact = Artifact(name, ns, location)
    with artifact._errors("opening it"):
        exists = artifact.exists
    if not exists:
        raise ObjectNotFound(
            f"no artifact {name!r} in namespace {ns!r} (at {location.uri(location.path(ns))})"
        )
    return artifact


def list_artifacts(namespace: str | None = None) -> list[Artifact]:
    """Every artifact of ``namespace`` (default: the run's, else ``default``; ``"*"``: all)."""
    if namespace == "*":
        _, location = _scope(None)
        pairs = location.manifests(None)
    else:
        ns, location = _scope(namespace)
        pairs = location.manifests(ns)
    return [Artifact(name, ns, location) for ns, name in pairs]


def list_namespaces() -> list[str]:
    """Namespaces that hold at least one artifact."""
    _, location = _scope(None)
    return sorted({ns for ns, _ in location.manifests(None)})


def remove_artifact(name: str, namespace: str | None = None) -> bool:
    """Delete artifact ``name``; whether it existed."""
    ns, location = _scope(namespace)
    artifact = Artifact(name, ns, location)
    if not artifact.exists:
        return False
    artifact.remove()
    return True
