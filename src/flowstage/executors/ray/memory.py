"""Cluster memory on Ray: objects in Ray's object store, owned by a named, detached actor.

Objects must outlive the worker that stored them, and in Ray an object lives as long as
its owner, the process that called ``ray.put``. So a stage's worker puts the value
(already pickled, sealed so that the actor never unpickles user classes), hands the
reference to the actor, and the actor puts its own copy, which it owns and keeps: the
object lives as long as the actor, that is as long as the Ray cluster (a fresh local Ray
stops with its executor; an external cluster keeps objects across drivers and runs until
they are deleted). ``ray.put``'s experimental ``_owner`` argument, which would save the
second copy, was removed in Ray 2.56.

Built inside workers from the descriptor of :meth:`RayExecutor.cluster_memory`
(``{"factory": "flowstage.executors.ray.memory:RayMemory", "name": ..., "namespace": ...}``).
Large buffers travel out of band all the way: ``get`` maps them from Ray's shared memory
without a copy, so NumPy arrays come back read-only, as ``ray.get`` returns them.
"""

from __future__ import annotations

import concurrent.futures
import pickle
import threading
from typing import TYPE_CHECKING, Any

from flowstage.storage.pickling import unpickle

if TYPE_CHECKING:
    from flowstage.storage.pickling import Pickled

ACTOR_NAME = "flowstage_object_store"
ACTOR_NAMESPACE = "flowstage"


class Sealed:
    """A pickled value (payload and out-of-band buffers) that Ray moves without unpickling."""

    __slots__ = ("buffers", "payload")

    def __init__(self, payload: bytes, buffers: list[Any]) -> None:
        self.payload = payload
        self.buffers = buffers

    def __reduce_ex__(self, protocol: Any) -> Any:
        # PickleBuffers let Ray's pickler keep large buffers out of band: copied once into
        # the object store, and read back as views on it.
        return (Sealed, (self.payload, [pickle.PickleBuffer(b) for b in self.buffers]))


class ObjectHolder:
    """The actor: ``(namespace, key) -> (ObjectRef, size, type, version)``. References
    arrive and leave boxed in a list, so that Ray passes them as references, not values."""

    def __init__(self) -> None:
        self._objects: dict[tuple[str, str], tuple[Any, int, str, int]] = {}
        self._lock = threading.Lock()
        self._version = 0
        self._copier = concurrent.futures.ThreadPoolExecutor(
            2, thread_name_prefix="flowstage-adopt"
        )

    def adopt(self, namespace: str, key: str, boxed: list[Any], size: int, kind: str) -> None:
        """Keep the object behind ``boxed[0]``, and a copy of it that this actor owns.

        The caller waits only for the first part: the actor maps the object (which pins
        it here) and serves it at once under the caller's reference; its own copy is
        made in the background and replaces that reference when done, so the copy is
        off the stage's path.
        """
        # lazy: Ray is an optional extra, imported only when it runs
        import ray

        sealed = ray.get(boxed[0])
        with self._lock:
            self._version += 1
            version = self._version
            self._objects[(namespace, key)] = (boxed[0], size, kind, version)
        self._copier.submit(self._own, namespace, key, sealed, version)

    def _own(self, namespace: str, key: str, sealed: Any, version: int) -> None:
        # lazy: Ray is an optional extra, imported only when it runs
        import ray

        own = ray.put(sealed)
        del sealed
        with self._lock:
            entry = self._objects.get((namespace, key))
            if entry is not None and entry[3] == version:  # not replaced or deleted meanwhile
                self._objects[(namespace, key)] = (own, entry[1], entry[2], version)

    def settle(self) -> None:
        """Wait until every adopted object has its own copy (tests, shutdown)."""
        self._copier.submit(lambda: None).result()
        self._copier.submit(lambda: None).result()

    def lookup(self, namespace: str, key: str) -> list[Any] | None:
        entry = self._objects.get((namespace, key))
        return None if entry is None else [entry[0]]

    def delete(self, namespace: str, key: str) -> bool:
        with self._lock:
            return self._objects.pop((namespace, key), None) is not None

    def entries(self, namespace: str | None) -> list[dict[str, Any]]:
        with self._lock:
            items = list(self._objects.items())
        return [
            {"namespace": ns, "key": key, "size": size, "type": kind}
            for (ns, key), (_, size, kind, _v) in items
            if namespace is None or ns == namespace
        ]

    def clear(self, namespace: str | None) -> int:
        with self._lock:
            doomed = [k for k in self._objects if namespace is None or k[0] == namespace]
            for k in doomed:
                del self._objects[k]
        return len(doomed)


class RayMemory:
    """Objects held by the detached actor ``name`` in Ray namespace ``namespace``."""

    def __init__(self, name: str = ACTOR_NAME, namespace: str = ACTOR_NAMESPACE) -> None:
        self.name = name
        self.namespace = namespace
        self._actor: Any = None
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"Ray cluster memory (actor {self.namespace}/{self.name})"

    def _holder(self, fresh: bool = False) -> Any:
        # lazy: Ray is an optional extra, imported only when it runs
        import ray

        with self._lock:
            if self._actor is None or fresh:
                # get_if_exists: whichever worker comes first creates it, the rest find it.
                # num_cpus=0: holding references must never take a slot from stages.
                actor_class = ray.remote(ObjectHolder)
                self._actor = actor_class.options(
                    name=self.name,
                    namespace=self.namespace,
                    lifetime="detached",
                    get_if_exists=True,
                    num_cpus=0,
                    max_concurrency=32,
                    max_restarts=0,
                ).remote()
            return self._actor

    def _call(self, method: str, *args: Any) -> Any:
        # lazy: Ray is an optional extra, imported only when it runs
        import ray

        try:
            return ray.get(getattr(self._holder(), method).remote(*args))
        except ray.exceptions.RayActorError:  # the cluster was restarted: find the new actor
            return ray.get(getattr(self._holder(fresh=True), method).remote(*args))

    def put(self, namespace: str, key: str, pickled: Pickled) -> None:
        # lazy: Ray is an optional extra, imported only when it runs
        import ray

        ref = ray.put(Sealed(pickled.payload, pickled.buffers))
        # Waiting for the actor matters: this worker owns ``ref`` and may exit after return.
        self._call("adopt", namespace, key, [ref], pickled.size, pickled.type)

    def get(self, namespace: str, key: str) -> Any:
        # lazy: Ray is an optional extra, imported only when it runs
        import ray

        boxed = self._call("lookup", namespace, key)
        if boxed is None:
            raise KeyError(key)
        sealed = ray.get(boxed[0])
        return unpickle(sealed.payload, sealed.buffers)

    def delete(self, namespace: str, key: str) -> bool:
        return bool(self._call("delete", namespace, key))

    def entries(self, namespace: str | None) -> list[dict[str, Any]]:
        return list(self._call("entries", namespace))

    def clear(self, namespace: str | None) -> int:
        return int(self._call("clear", namespace))
