"""What ``Artifact.transaction()`` restores when its block fails.

Flowdapt runs the block in an fsspec transaction: file writes wait until the block ends
and are dropped if it raises, so an artifact keeps its old files and metadata. Here the
block's changes happen at once (a later read in the block sees them) and are undone if
it raises: files it created go, files it replaced or deleted come back, and so does the
metadata, also when the block deleted the whole artifact. Deletions are undone too,
which fsspec's transaction (it defers writes only) does not do.

On entry every file is kept aside, outside every namespace (a folder under the store's
root whose name starts with ``.tmp-``, which listings skip): on a local disk as a hard
link, which costs no copy because flowstage replaces files by rename and never rewrites
them in place; on an object store as a copy made by the store.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from typing import TYPE_CHECKING, Any

from flowstage.storage.location import MANIFEST

if TYPE_CHECKING:
    from flowstage.storage.artifacts import Artifact
    from flowstage.storage.location import Location


def _own_files(location: Location, folder: str) -> list[str]:
    """Names of the files in ``folder`` a snapshot covers (not the manifest, not
    half-written temporary files)."""
    return [
        entry["name"]
        for entry in location.list_dir(folder)
        if entry["name"] != MANIFEST and not entry["name"].startswith(".tmp-")
    ]


class Snapshot:
    """An artifact's files and metadata as they were when :meth:`take` ran."""

    def __init__(self, artifact: Artifact, manifest: dict[str, Any], aside: str) -> None:
        self.artifact = artifact
        self.manifest = manifest
        #: where the files are kept meanwhile
        self.aside = aside
        self.names: list[str] = []

    @classmethod
    def take(cls, artifact: Artifact) -> Snapshot:
        """Keep aside the files and metadata of ``artifact`` (which must exist)."""
        location = artifact.location
        manifest = artifact._manifest()
        snapshot = cls(artifact, manifest, location.path(f".tmp-txn-{uuid.uuid4().hex}"))
        try:
            for name in _own_files(location, artifact.path):
                snapshot._keep(name)
                snapshot.names.append(name)
        except BaseException:
            snapshot.discard()
            raise
        return snapshot

    def _keep(self, name: str) -> None:
        location = self.artifact.location
        source, kept = f"{self.artifact.path}/{name}", f"{self.aside}/{name}"
        if not location.local:
            location.fs.copy(source, kept)
            return
        os.makedirs(self.aside, mode=0o700, exist_ok=True)
        try:
            os.link(source, kept)
        except OSError:  # a filesystem without hard links: a real copy
            shutil.copy2(source, kept)

    def restore(self) -> None:
        """Put the artifact back as it was: created files go, kept ones return, and
        the metadata is written back."""
        artifact, location = self.artifact, self.artifact.location
        kept = set(self.names)
        for name in _own_files(location, artifact.path):
            if name not in kept:
                location.remove(f"{artifact.path}/{name}")
        for name in self.names:
            source, target = f"{self.aside}/{name}", f"{artifact.path}/{name}"
            if location.local:
                os.makedirs(artifact.path, mode=0o700, exist_ok=True)
                os.replace(source, target)
            else:
                location.fs.copy(source, target)
        # the manifest last: the artifact exists again only once its files are back
        location.write_manifest(artifact.namespace, artifact.name, self.manifest)
        self.discard()

    def discard(self) -> None:
        """Forget the kept files."""
        location = self.artifact.location
        if location.local:
            shutil.rmtree(self.aside, ignore_errors=True)
            return
        with contextlib.suppress(FileNotFoundError):
            location.fs.rm(self.aside, recursive=True)
