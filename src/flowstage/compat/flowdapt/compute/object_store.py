"""``flowdapt.compute.object_store``: ``put``/``get``/``delete`` with Flowdapt's keywords.

``namespace=""`` is the run's namespace. ``artifact_only=True`` stores in an artifact
named after the key, written by ``save_artifact_hook(artifact, value)`` and read by
``load_artifact_hook(artifact)`` when given (else pickled by flowstage). Without it the
value goes to cluster memory when the executor has it, else to an artifact. A missing
object raises :class:`~flowstage.compat.flowdapt.lib.errors.NotFound`: a
``ResourceNotFoundError``, a ``KeyError`` and a ``FileNotFoundError`` at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowstage.compat.flowdapt.compute.artifacts import get_artifact, new_artifact
from flowstage.compat.flowdapt.lib.errors import NotFound
from flowstage.storage.object_store import object_store as _store

_MISSING = object()


def _ns(namespace: str | None) -> str | None:
    return namespace or None


def put(
    key: str,
    value: Any,
    namespace: str = "",
    artifact_only: bool = False,
    save_artifact_hook: Callable[[Any, Any], None] | None = None,
    **_options: Any,
) -> None:
    """Store ``value`` under ``key``."""
    if artifact_only and save_artifact_hook is not None:
        artifact = new_artifact(key, namespace, exist_ok=True)
        with artifact.transaction():
            artifact.clear()
            save_artifact_hook(artifact, value)
        return
    _store.put(key, value, "artifact" if artifact_only else "fallback", namespace=_ns(namespace))


def get(
    key: str,
    namespace: str = "",
    artifact_only: bool = False,
    load_artifact_hook: Callable[[Any], Any] | None = None,
    **_options: Any,
) -> Any:
    """The value stored under ``key``.

    :raises NotFound: nothing is stored under ``key`` in the namespace
    """
    if load_artifact_hook is None or not artifact_only:
        value = _store.get(
            key, _MISSING, "artifact" if artifact_only else "fallback", namespace=_ns(namespace)
        )
        if value is not _MISSING:
            return value
        if load_artifact_hook is None:
            where = f"namespace {namespace!r}" if namespace else "the run's namespace"
            raise NotFound(f"no object {key!r} in {where}")
    try:
        artifact = get_artifact(key, namespace)
    except FileNotFoundError as exc:
        raise NotFound(str(exc)) from None
    return load_artifact_hook(artifact)


def delete(key: str, namespace: str = "", artifact_only: bool = False, **_options: Any) -> None:
    """Remove ``key`` (from artifacts only, with ``artifact_only``)."""
    _store.delete(key, "artifact" if artifact_only else "fallback", namespace=_ns(namespace))
    try:
        get_artifact(key, namespace).delete()
    except FileNotFoundError:
        pass


def exists(key: str, namespace: str = "", artifact_only: bool = False, **_options: Any) -> bool:
    """Whether ``key`` is stored (hook-written artifacts included)."""
    strategy = "artifact" if artifact_only else "fallback"
    if _store.exists(key, strategy, namespace=_ns(namespace)):
        return True
    try:
        get_artifact(key, namespace)
    except FileNotFoundError:
        return False
    return True


__all__ = ["delete", "exists", "get", "put"]
