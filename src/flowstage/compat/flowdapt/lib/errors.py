"""``flowdapt.lib.errors``: the errors Flowdapt plugins catch."""

from __future__ import annotations

from flowstage.core.errors import ArtifactNotFound


class ResourceNotFoundError(Exception):
    """Flowdapt's error for anything missing (an object, an artifact, a workflow)."""


class NotFound(ArtifactNotFound, ResourceNotFoundError):
    """What the compatibility object store raises for a missing object: a
    :class:`ResourceNotFoundError`, a ``KeyError`` and a ``FileNotFoundError``, so every
    ``except`` that Flowdapt code writes for it matches."""


__all__ = ["NotFound", "ResourceNotFoundError"]
