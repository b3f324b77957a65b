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

Changes to an artifact's manifest (``put``, metadata, deleting the object) hold a lock
per artifact on local disks, across threads and processes (``flock`` on a file under
``<url>/.locks/``), so none is lost. Object stores offer no lock through fsspec: there
concurrent writers of one artifact's metadata and object must take turns themselves.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from flowstage.core.errors import ArtifactNotFound, ObjectStoreError
from flowstage.storage.keys import validate_key, validate_namespace
from flowstage.storage.location import MANIFEST, Location, _internal, _now
from flowstage.storage.scope import _Scope
from flowstage.storage.serializers import (
    Serializer,
    get_serializer,
    register_serializer,
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
        """The file's path inside the artifact store (a local path or a bucket key)."""
        return f"{self.artifact.path}/{self.name}"

    @property
    def uri(self) -> str:
        """The file's URL (``file://...``, ``s3://...``)."""
        return self.artifact.location.uri(self.path)

    @property
    def exists(self) -> bool:
        """Whether the file has been written."""
        return self.artifact.location.exists(self.path)

    @property
    def size(self) -> int:
        """The file's size in bytes."""
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
        """The artifact's folder inside the artifact store."""
        return self.location.path(self.namespace, self.name)

    @property
    def uri(self) -> str:
        """The artifact folder's URL (``file://...``, ``s3://...``)."""
        return self.location.uri(self.path)

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        with self.location.errors(
            f"artifact {self.name!r} in namespace {self.namespace!r}: {action}", "this process"
        ):
            yield

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """No other writer changes the manifest meanwhile (a put would otherwise lose its
        value file to a metadata write that read the manifest before it)."""
        with self._errors("locking it"), self.location.locked(self.namespace, self.name):
            yield

    def _manifest(self) -> dict[str, Any]:
        with self._errors("reading its metadata"):
            manifest = self.location.read_manifest(self.namespace, self.name)
        if manifest is None:
            raise ArtifactNotFound(
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
        """What ``object_store.put`` stored here (``serializer``, ``size``, ``type``), if
        anything."""
        return self._manifest().get("object")

    def get_meta(self, key: str, default: Any = None) -> Any:
        """The metadata value under ``key``, or ``default``."""
        return self.metadata.get(key, default)

    def set_meta(self, key: str, value: Any) -> None:
        """Set one metadata value (JSON); the manifest is rewritten atomically."""
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
        with self._locked():
            manifest = self._manifest()
            manifest.setdefault("metadata", {}).update(changes)
            self._save(manifest)

    def del_meta(self, key: str) -> None:
        """Remove the metadata value under ``key``.

        :raises KeyError: there is none
        """
        with self._locked():
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
            msg = (
                f"artifact {self.name!r} in namespace {self.namespace!r} has no file {name!r} "
                f"(files: {have})"
            )
            raise FileNotFoundError(msg)
        return file

    def has_file(self, name: str) -> bool:
        """Whether the artifact holds a file called ``name``."""
        return ArtifactFile(self, name).exists

    def list_files(self) -> list[ArtifactFile]:
        """The artifact's files, by name."""
        with self._errors("listing its files"):
            entries = self.location.list_dir(self.path)
        return [
            ArtifactFile(self, e["name"])
            for e in sorted(entries, key=lambda e: e["name"])
            if not _internal(e["name"])
        ]

    def summary(self) -> dict[str, Any]:
        """What listings show of the artifact: ``namespace``, ``name``, the stored
        object's ``object`` type and ``serializer`` (empty for plain files), ``size`` (the
        object's, else its files' total), ``files`` (a count) and ``updated`` (ISO time)."""
        manifest = self.location.read_manifest(self.namespace, self.name) or {}
        info = manifest.get("object") or {}
        files = self.list_files()
        return {
            "namespace": self.namespace,
            "name": self.name,
            "object": info.get("type", ""),
            "serializer": info.get("serializer", ""),
            "size": info.get("size") if info else sum(f.size for f in files),
            "files": len(files),
            "updated": manifest.get("updated_at") or manifest.get("created_at"),
        }

    def read(self, name: str, mode: str = "rb") -> Any:
        """The whole content of file ``name``: bytes (``rb``) or text (``r``)."""
        return self.get_file(name).read(mode)

    def write(self, name: str, data: str | bytes) -> ArtifactFile:
        """Write (create or replace) file ``name``, atomically."""
        self._manifest()
        file = ArtifactFile(self, name)
        file.write(data)
        return file

    def remove_file(self, name: str) -> bool:
        """Delete file ``name``; whether it existed."""
        return ArtifactFile(self, name).remove()

    def remove(self) -> None:
        """Delete the artifact, its files and its metadata."""
        with self._errors("removing it"):
            self.location._remove_artifact(self.namespace, self.name)

    @property
    def exists(self) -> bool:
        """Whether the artifact exists (its manifest has been written)."""
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
    with artifact._errors("creating it"), location.locked(ns, name):
        if location.read_manifest(ns, name) is not None:  # another writer was quicker
            if not exist_ok:
                raise FileExistsError(f"artifact {name!r} already exists in namespace {ns!r}")
            raced = True
        else:
            raced = False
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
    if raced and metadata:
        artifact.update_meta(metadata)
    return artifact


def get_artifact(name: str, namespace: str | None = None) -> Artifact:
    """:raises ArtifactNotFound: no artifact ``name`` in the namespace (a ``KeyError``
    and a ``FileNotFoundError``)"""
    ns, location = _scope(namespace)
    artifact = Artifact(name, ns, location)
    with artifact._errors("opening it"):
        exists = artifact.exists
    if not exists:
        raise ArtifactNotFound(
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
