"""``flowdapt.compute.artifacts``: artifacts with Flowdapt's methods, on flowstage's.

``namespace=""`` (Flowdapt's default) is the run's namespace, as ``None`` is in flowstage.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from flowstage.compat.flowdapt.compute.artifacts.transaction import Snapshot
from flowstage.storage import artifacts as _store
from flowstage.storage.artifacts import ArtifactFile


def _ns(namespace: str | None) -> str | None:
    return namespace or None


class Artifact(_store.Artifact):
    """A flowstage artifact with Flowdapt's spelling: ``new_file`` replaces an existing
    file unless ``exist_ok=False``; ``is_empty``, ``delete``, ``delete_file``, ``clear``
    and ``transaction`` exist."""

    @classmethod
    def _of(cls, artifact: _store.Artifact) -> Artifact:
        return cls(artifact.name, artifact.namespace, artifact.location)

    def new_file(
        self, name: str, content: str | bytes | None = None, *, exist_ok: bool = True
    ) -> ArtifactFile:
        return super().new_file(name, content, exist_ok=exist_ok)

    @property
    def is_empty(self) -> bool:
        """Whether the artifact holds no file."""
        return not self.list_files()

    def delete(self) -> None:
        """Delete the artifact, its files and its metadata."""
        self.remove()

    def delete_file(self, name: str) -> bool:
        """Delete one file; whether it existed."""
        return self.remove_file(name)

    def clear(self) -> None:
        """Delete every file, keeping the artifact and its metadata."""
        for file in self.list_files():
            file.remove()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Artifact]:
        """All of the block's changes to this artifact, or none: if the block raises,
        files it created are removed, files it replaced or deleted come back, and so does
        the metadata (see :mod:`.transaction`)."""
        snapshot = Snapshot.take(self)
        try:
            yield self
        except BaseException:
            snapshot.restore()
            raise
        snapshot.discard()


def new_artifact(
    name: str,
    namespace: str = "",
    metadata: Mapping[str, Any] | None = None,
    exist_ok: bool = False,
    **_options: Any,
) -> Artifact:
    """Create artifact ``name`` (``exist_ok``: open it if it exists)."""
    made = _store.new_artifact(name, _ns(namespace), metadata=metadata, exist_ok=exist_ok)
    return Artifact._of(made)


def get_artifact(name: str, namespace: str = "", create: bool = False, **_options: Any) -> Artifact:
    """Artifact ``name``; with ``create``, made if missing.

    :raises ArtifactNotFound: it does not exist (a ``FileNotFoundError``)
    """
    if create:
        return new_artifact(name, namespace, exist_ok=True)
    return Artifact._of(_store.get_artifact(name, _ns(namespace)))


def check_if_artifact_exists(name: str, namespace: str = "", **_options: Any) -> bool:
    try:
        get_artifact(name, namespace)
    except FileNotFoundError:
        return False
    return True


def list_artifacts(namespace: str = "", **_options: Any) -> list[Artifact]:
    return [Artifact._of(a) for a in _store.list_artifacts(_ns(namespace))]


__all__ = [
    "Artifact",
    "ArtifactFile",
    "check_if_artifact_exists",
    "get_artifact",
    "list_artifacts",
    "new_artifact",
]
