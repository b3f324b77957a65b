"""``flowdapt.compute.artifacts.misc``: hooks that write a value into an artifact's files
and read it back (``save_artifact_hook=`` / ``load_artifact_hook=`` of the object store)."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from typing import Any

import cloudpickle

from flowstage.storage.artifacts import Artifact

SaveHook = Callable[[Artifact, Any], None]
LoadHook = Callable[[Artifact], Any]


def _checked(artifact: Artifact, kind: str) -> None:
    found = artifact.get_meta("value_type")
    if found != kind:
        msg = f"artifact {artifact.name!r} holds a {found or 'value'} not written as {kind}"
        raise ValueError(msg)


def json_to_artifact(name: str = "file") -> SaveHook:
    """Write the value as JSON to ``<name>.json``."""

    def save(artifact: Artifact, value: Any) -> None:
        artifact.set_meta("value_type", "json")
        artifact.write(f"{name}.json", json.dumps(value).encode())

    return save


def json_from_artifact(name: str = "file") -> LoadHook:
    """Read the value :func:`json_to_artifact` wrote."""

    def load(artifact: Artifact) -> Any:
        _checked(artifact, "json")
        return json.loads(artifact.read(f"{name}.json"))

    return load


def pickle_to_artifact(name: str = "file") -> SaveHook:
    """Write the value with cloudpickle to ``<name>.pkl``."""

    def save(artifact: Artifact, value: Any) -> None:
        artifact.set_meta("value_type", "pickle")
        artifact.write(f"{name}.pkl", cloudpickle.dumps(value))

    return save


def pickle_from_artifact(name: str = "file") -> LoadHook:
    """Read the value :func:`pickle_to_artifact` wrote."""

    def load(artifact: Artifact) -> Any:
        _checked(artifact, "pickle")
        return pickle.loads(artifact.read(f"{name}.pkl"))

    return load


__all__ = [
    "json_from_artifact",
    "json_to_artifact",
    "pickle_from_artifact",
    "pickle_to_artifact",
]
