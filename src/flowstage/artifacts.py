"""Named artifacts: ``from flowstage.artifacts import new_artifact, get_artifact``.

The implementation lives in :mod:`flowstage.storage.artifacts`; this module is the
public spelling users import.
"""

from flowstage.storage.artifacts import (
    Artifact,
    ArtifactFile,
    Serializer,
    get_artifact,
    get_serializer,
    list_artifacts,
    list_namespaces,
    new_artifact,
    register_serializer,
    remove_artifact,
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
