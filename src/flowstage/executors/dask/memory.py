"""Cluster memory on Dask: objects are scattered to a worker and published on the
scheduler, so any picklable object (not only Dask collections) stays in worker memory
until it is deleted or the cluster stops.

Built inside workers from the descriptor of :meth:`DaskExecutor.cluster_memory`
(``{"factory": "flowstage.executors.dask.memory:DaskMemory", "address": ...}``).
A published dataset holds ``{"future": ..., "size": ..., "type": ...}`` under the name
``flowstage/<namespace>/<key>``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowstage.storage.pickling import Pickled

PREFIX = "flowstage/"


class DaskMemory:
    """Objects published on the Dask scheduler at ``address``."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._own: Any = None
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"Dask cluster memory (scheduler {self.address})"

    def _client(self) -> Any:
        """The worker's client inside a task; elsewhere (the driver) a client of our own."""
        # lazy: Dask is an optional extra, imported only when it runs
        import distributed

        try:
            worker = distributed.get_worker()
        except ValueError:
            worker = None
        if worker is not None and worker.scheduler.address == self.address:
            return distributed.get_client()
        with self._lock:
            if self._own is None or self._own.status in ("closing", "closed"):
                self._own = distributed.Client(self.address, set_as_default=False, timeout=30)  # type: ignore[no-untyped-call]
            return self._own

    @staticmethod
    def _name(namespace: str, key: str) -> str:
        return f"{PREFIX}{namespace}/{key}"

    def put(self, namespace: str, key: str, pickled: Pickled) -> None:
        # lazy: Dask is an optional extra, imported only when it runs
        import distributed

        client = self._client()
        try:  # keep the object where it was made: the next stage may well run there too
            workers = [distributed.get_worker().address]
        except ValueError:
            workers = None
        # hash=False: tokenizing would read the whole object, and nested scatters with
        # hashed keys can collide with keys other tasks are releasing.
        [future] = client.scatter([pickled.value], hash=False, workers=workers)
        record = {"future": future, "size": pickled.size, "type": pickled.type}
        client.publish_dataset(record, name=self._name(namespace, key), override=True)

    def _record(self, client: Any, name: str) -> dict[str, Any] | None:
        record = client.get_dataset(name, default=None)
        return record if isinstance(record, dict) else None

    def get(self, namespace: str, key: str) -> Any:
        client = self._client()
        record = self._record(client, self._name(namespace, key))
        if record is None:
            raise KeyError(key)
        return record["future"].result()

    def delete(self, namespace: str, key: str) -> bool:
        client = self._client()
        name = self._name(namespace, key)
        if name not in client.list_datasets():  # unpublishing a missing name is not an error
            return False
        client.unpublish_dataset(name)
        return True

    def _names(self, client: Any, namespace: str | None) -> list[str]:
        prefix = PREFIX if namespace is None else f"{PREFIX}{namespace}/"
        return sorted(
            n for n in client.list_datasets() if isinstance(n, str) and n.startswith(prefix)
        )

    def entries(self, namespace: str | None) -> list[dict[str, Any]]:
        client = self._client()
        out = []
        for name in self._names(client, namespace):
            record = self._record(client, name) or {}
            ns, _, key = name[len(PREFIX) :].partition("/")
            out.append(
                {
                    "namespace": ns,
                    "key": key,
                    "size": record.get("size"),
                    "type": record.get("type"),
                }
            )
        return out

    def clear(self, namespace: str | None) -> int:
        client = self._client()
        count = 0
        for name in self._names(client, namespace):
            client.unpublish_dataset(name)
            count += 1
        return count
