"""The object store: ``object_store.put(key, value)`` in one stage, ``object_store.get(key)``
in another, on any executor, without touching engine futures or object references.

Two tiers, chosen by ``strategy``:

``cluster_memory``
    the executor's in-memory store, found in workers through the descriptor that
    :meth:`Executor.cluster_memory` returns (carried by the run context). Lives as long as
    the executor. Outside a run: a store in this process.
``artifact``
    persistent files through fsspec (:mod:`flowstage.storage.artifacts`).
``fallback`` (default)
    ``put`` uses cluster memory when the executor has it and the pickled object is at most
    ``object_store.memory_size_limit`` (settings), else an artifact; ``get`` looks in
    cluster memory, then in artifacts.

Everything is scoped by the run's namespace (``"default"`` outside a run). Nothing here
imports dask or ray: their backends are imported from the descriptor's import string.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from flowstage.core.errors import MemoryFull, ObjectNotFound, ObjectStoreError
from flowstage.storage.keys import (
    ALL_NAMESPACES,
    MISSING,
    validate_key,
)
from flowstage.storage.pickling import Pickled, pickle_value
from flowstage.storage.scope import _Scope, _strategy

if TYPE_CHECKING:
    from flowstage.core.executor import Executor

__all__ = ["MISSING", "ObjectStore", "object_store"]


class ObjectStore:
    """``from flowstage import object_store``: share objects between stages and runs."""

    def put(
        self,
        key: str,
        value: Any,
        strategy: str = "fallback",
        *,
        namespace: str | None = None,
        serializer: Any = None,
        executor: Executor | None = None,
    ) -> str:
        """Store ``value`` under ``key`` in the run's namespace; returns the tier used
        (``"cluster_memory"`` or ``"artifact"``).

        :param strategy: ``cluster_memory``, ``artifact`` or ``fallback`` (memory when the
            executor has it and the object is small enough, else an artifact)
        :param namespace: another namespace than the run's (default: the run's, else ``default``)
        :param serializer: how an artifact writes the value: ``"cloudpickle"`` (default),
            ``"json"``, ``"parquet"``, ``"arrow"``, or a registered serializer's name or instance
        :param executor: a started executor whose cluster memory to use from outside a run
        :raises ObjectStoreError: bad key, unpicklable value, storage full or unreachable
        """
        strategy = _strategy(strategy)
        scope = _Scope(namespace, executor)
        key = validate_key(key)
        memory = scope.memory() if strategy != "artifact" else None
        if strategy == "cluster_memory" and memory is None:
            raise self._no_memory(scope, key)
        if memory is not None:
            pickled = pickle_value(value, key, scope.where)
            if strategy == "cluster_memory" or pickled.size <= scope.size_limit:
                try:
                    self._memory_put(memory, scope, key, pickled)
                except MemoryFull:
                    if strategy == "cluster_memory":
                        raise
                else:
                    if strategy == "fallback":  # an older artifact must not come back later
                        scope.artifacts().delete_object(scope.namespace, key, scope.where)
                    return "cluster_memory"
            del pickled
        scope.artifacts().store_object(scope.namespace, key, value, serializer, scope.where)
        if memory is not None:  # get looks in memory first: drop the older value there
            memory.delete(scope.namespace, key)
        return "artifact"

    def get(
        self,
        key: str,
        default: Any = MISSING,
        strategy: str = "fallback",
        *,
        namespace: str | None = None,
        executor: Executor | None = None,
    ) -> Any:
        """The object stored under ``key`` (cluster memory first, then artifacts with
        ``fallback``); ``default`` when there is none.

        :raises ObjectNotFound: no such object and no default (names key and namespace)
        """
        strategy = _strategy(strategy)
        scope = _Scope(namespace, executor)
        key = validate_key(key)
        looked = []
        if strategy != "artifact":
            memory = scope.memory()
            if memory is not None:
                looked.append(memory.describe())
                try:
                    with _backend_errors(memory, f"object_store.get({key!r}) in {scope.where}"):
                        return memory.get(scope.namespace, key)
                except KeyError:
                    pass
            else:
                looked.append("no cluster memory (the executor has none)")
        if strategy != "cluster_memory":
            artifacts = scope.artifacts()
            looked.append(f"artifacts at {artifacts.url}")
            try:
                return artifacts.load_object(scope.namespace, key, scope.where)
            except KeyError:
                pass
        if default is not MISSING:
            return default
        msg = (
            f"no object {key!r} in namespace {scope.namespace!r} "
            f"(object_store.get in {scope.where}; "
            f"looked in {' and '.join(looked)})"
        )
        raise ObjectNotFound(msg)

    def exists(
        self,
        key: str,
        strategy: str = "fallback",
        *,
        namespace: str | None = None,
        executor: Executor | None = None,
    ) -> bool:
        """Whether ``get`` would find ``key``."""
        sentinel = object()
        return (
            self.get(key, sentinel, strategy, namespace=namespace, executor=executor)
            is not sentinel
        )

    def delete(
        self,
        key: str,
        strategy: str = "fallback",
        *,
        namespace: str | None = None,
        executor: Executor | None = None,
    ) -> bool:
        """Remove ``key`` from the tiers ``strategy`` names (``fallback``: both); whether
        anything was there."""
        strategy = _strategy(strategy)
        scope = _Scope(namespace, executor)
        key = validate_key(key)
        found = False
        if strategy != "artifact":
            memory = scope.memory()
            if memory is not None:
                with _backend_errors(memory, f"object_store.delete({key!r}) in {scope.where}"):
                    found = bool(memory.delete(scope.namespace, key))
        if strategy != "cluster_memory":
            found = scope.artifacts().delete_object(scope.namespace, key, scope.where) or found
        return found

    def clear(
        self,
        namespace: str | None = None,
        *,
        strategy: str = "cluster_memory",
        executor: Executor | None = None,
    ) -> int:
        """Remove every object of ``namespace`` (default: the current one; ``"*"``: all)
        from cluster memory, and from artifacts too with ``strategy="artifact"`` or
        ``"fallback"``; how many were removed."""
        strategy = _strategy(strategy)
        every = namespace == ALL_NAMESPACES
        scope = _Scope(None if every else namespace, executor)
        target = None if every else scope.namespace
        count = 0
        if strategy != "artifact":
            memory = scope.memory()
            if memory is not None:
                count += memory.clear(target)
        if strategy != "cluster_memory":
            count += scope.artifacts().clear_objects(target, scope.where)
        return count

    def report(
        self,
        namespace: str | None = None,
        *,
        strategy: str = "fallback",
        executor: Executor | None = None,
    ) -> dict[str, Any]:
        """What is stored, per tier: ``{tier: {"where", "count", "bytes", "objects": [...]}}``
        where each object is ``{"namespace", "key", "size", "type"}``. ``namespace="*"``
        reports every namespace."""
        strategy = _strategy(strategy)
        every = namespace == ALL_NAMESPACES
        scope = _Scope(None if every else namespace, executor)
        target = None if every else scope.namespace
        out: dict[str, Any] = {}
        if strategy != "artifact":
            memory = scope.memory()
            entries = memory.entries(target) if memory is not None else []
            out["cluster_memory"] = _summary(
                memory.describe() if memory is not None else None, entries
            )
        if strategy != "cluster_memory":
            artifacts = scope.artifacts()
            out["artifact"] = _summary(artifacts.url, artifacts.object_entries(target, scope.where))
        return out

    @staticmethod
    def _memory_put(memory: Any, scope: _Scope, key: str, pickled: Pickled) -> None:
        try:
            memory.put(scope.namespace, key, pickled)
        except ObjectStoreError:
            raise
        except Exception as exc:
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                msg = f"{memory.describe()} is full: {exc}"
                raise MemoryFull(msg) from None
            msg = (
                f"object_store.put({key!r}) in {scope.where}: {memory.describe()} failed: "
                f"{type(exc).__name__}: {exc}"
            )
            raise ObjectStoreError(msg) from exc

    @staticmethod
    def _no_memory(scope: _Scope, key: str) -> ObjectStoreError:
        engine = scope.context.executor if scope.context else "this executor"
        msg = (
            f"object_store.put({key!r}, strategy='cluster_memory') in {scope.where}: executor "
            f"{engine!r} has no cluster memory; use strategy='fallback' or 'artifact'"
        )
        return ObjectStoreError(msg)

    def __repr__(self) -> str:
        return "<flowstage object_store>"


@contextlib.contextmanager
def _backend_errors(memory: Any, action: str) -> Iterator[None]:
    """A cluster memory that fails (a lost connection, a dead actor) says which and where."""
    try:
        yield
    except (KeyError, ObjectStoreError):
        raise
    except Exception as exc:
        msg = f"{action}: {memory.describe()} failed: {type(exc).__name__}: {exc}"
        raise ObjectStoreError(msg) from exc


def _summary(where: str | None, entries: list[dict[str, Any]]) -> dict[str, Any]:
    entries = sorted(entries, key=lambda e: (e["namespace"], e["key"]))
    return {
        "where": where,
        "count": len(entries),
        "bytes": sum(e.get("size") or 0 for e in entries),
        "objects": entries,
    }


object_store = ObjectStore()
