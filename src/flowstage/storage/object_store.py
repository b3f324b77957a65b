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
import json
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from flowstage.core.context import _current
from flowstage.core.errors import InvalidKeyError, MemoryFull, ObjectNotFound, ObjectStoreError

if TYPE_CHECKING:
    from flowstage.core.context import RunContext
    from flowstage.core.executor import Executor

STRATEGIES = ("cluster_memory", "artifact", "fallback")
ALL_NAMESPACES = "*"


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: ``get``'s default: raise ``ObjectNotFound`` instead of returning a default
MISSING: Any = _Missing()


# names -----------------------------------------------------------------------

_NAMESPACE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_RESERVED = re.compile(r"\.tmp-|\.value-|\.artifact\.json$")


def validate_namespace(namespace: Any) -> str:
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        msg = (
            f"invalid namespace {namespace!r}: expected letters, digits, '_', '.' or '-' "
            f"(not starting with '.' or '-', at most 128 characters)"
        )
        raise InvalidKeyError(msg)
    return namespace


def validate_key(key: Any, what: str = "key") -> str:
    """``key`` if it is a relative ``/``-separated path without ``.``/``..`` segments.

    :raises InvalidKeyError: naming the key and what is wrong with it
    """
    if not isinstance(key, str):
        raise InvalidKeyError(
            f"invalid {what} {key!r}: expected a string, got {type(key).__name__}"
        )
    problem = None
    if not key:
        problem = "it is empty"
    elif len(key) > 512:
        problem = "it is longer than 512 characters"
    elif any(ord(c) < 32 for c in key) or "\\" in key:
        problem = "it contains a backslash or a control character"
    elif key.startswith("/") or re.match(r"[A-Za-z]:", key) or "://" in key:
        problem = "it is an absolute path or a URL"
    else:
        for segment in key.split("/"):
            if segment in ("", ".", ".."):
                problem = f"it has an empty, '.' or '..' segment ({segment!r})"
                break
            if _RESERVED.match(segment):
                problem = f"segment {segment!r} is reserved for flowstage's own files"
                break
    if problem:
        msg = f"invalid {what} {key!r}: {problem}; use a relative name such as 'features/city_1'"
        raise InvalidKeyError(msg)
    return key


# pickling ----------------------------------------------------------------------


class Pickled:
    """A value with its pickle (protocol 5: large buffers such as NumPy data are kept
    out of band, as views, not copied) and its size in bytes."""

    __slots__ = ("buffers", "payload", "size", "type", "value")

    def __init__(self, value: Any, payload: bytes, buffers: list[memoryview]) -> None:
        self.value = value
        self.payload = payload
        self.buffers = buffers
        self.size = len(payload) + sum(b.nbytes for b in buffers)
        self.type = type_name(value)


def type_name(value: Any) -> str:
    cls = type(value)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def pickle_value(value: Any, key: str, where: str) -> Pickled:
    """Pickle ``value`` once: proves it can cross processes and measures it.

    :raises ObjectStoreError: the value cannot be pickled (naming key and stage)
    """
    import pickle

    import cloudpickle

    buffers: list[pickle.PickleBuffer] = []
    try:
        payload = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
        raws = [b.raw() for b in buffers]
    except BufferError:  # a non-contiguous buffer: keep everything in band
        payload, raws = cloudpickle.dumps(value, protocol=5), []
    except Exception as exc:  # noqa: BLE001 - a value's own __reduce__ may raise anything
        raise unpicklable(key, where, value, exc) from None
    return Pickled(value, payload, raws)


def unpicklable(
    key: str, where: str, value: Any, exc: BaseException, serializer: str = "cloudpickle"
) -> ObjectStoreError:
    if serializer == "cloudpickle":
        what, hint = (
            "pickled",
            (
                "stored objects must be picklable to reach other workers (store what the "
                "object is built from, or pick a serializer that can write it)"
            ),
        )
    else:
        what, hint = (
            f"written by serializer {serializer!r}",
            "pick another serializer (default: cloudpickle)",
        )
    msg = (
        f"object_store.put({key!r}) in {where}: the value (a {type_name(value)}) cannot be "
        f"{what}: {type(exc).__name__}: {exc}; {hint}"
    )
    return ObjectStoreError(msg)


def unpickle(payload: Any, buffers: list[Any]) -> Any:
    import pickle

    return pickle.loads(payload, buffers=buffers)


# in-process memory: threads, and code outside a run -------------------------------


class LocalMemory:
    """Cluster memory inside one process: the local executor on threads, and code that
    runs outside a workflow. Objects are kept as they are (``get`` returns the object
    ``put`` stored, not a copy)."""

    _registry: ClassVar[dict[str, LocalMemory]] = {}

    def __init__(self, label: str = "this process") -> None:
        self.id = uuid.uuid4().hex
        self.label = label
        self._objects: dict[tuple[str, str], tuple[Any, int, str]] = {}
        self._lock = threading.Lock()

    @classmethod
    def create(cls, label: str) -> LocalMemory:
        """A store that workers of this process find through :meth:`descriptor`."""
        memory = cls(label)
        cls._registry[memory.id] = memory
        return memory

    @classmethod
    def attach(cls, id: str) -> LocalMemory:
        try:
            return cls._registry[id]
        except KeyError:
            msg = (
                f"the cluster memory of a local executor on threads ({id}) is not in process "
                f"{os.getpid()}: it lives in the executor's own process, or the executor was closed"
            )
            raise ObjectStoreError(msg) from None

    def descriptor(self) -> dict[str, Any]:
        return {"factory": "flowstage.storage.object_store:LocalMemory.attach", "id": self.id}

    def close(self) -> None:
        self._registry.pop(self.id, None)
        forget_backend(self.descriptor())
        with self._lock:
            self._objects.clear()

    def describe(self) -> str:
        return f"memory of {self.label}"

    def put(self, namespace: str, key: str, pickled: Pickled) -> None:
        with self._lock:
            self._objects[(namespace, key)] = (pickled.value, pickled.size, pickled.type)

    def get(self, namespace: str, key: str) -> Any:
        return self._objects[(namespace, key)][0]

    def delete(self, namespace: str, key: str) -> bool:
        with self._lock:
            return self._objects.pop((namespace, key), None) is not None

    def entries(self, namespace: str | None) -> list[dict[str, Any]]:
        with self._lock:
            items = list(self._objects.items())
        return [
            {"namespace": ns, "key": key, "size": size, "type": kind}
            for (ns, key), (_, size, kind) in items
            if namespace is None or ns == namespace
        ]

    def clear(self, namespace: str | None) -> int:
        with self._lock:
            doomed = [k for k in self._objects if namespace is None or k[0] == namespace]
            for k in doomed:
                del self._objects[k]
        return len(doomed)


# shared memory between local worker processes ------------------------------------

_MAGIC = b"FSOBJ01\n"
_MMAP_FROM = 1 << 20


class SharedDirMemory:
    """Cluster memory of the local executor with ``processes: true``.

    One file per object in a directory on ``/dev/shm`` (RAM) that every worker process
    opens: ``put`` writes the pickle once (large buffers straight from the object), and
    ``get`` maps the file copy-on-write, so a NumPy array comes back without a copy and
    nothing passes through the driver. Files are replaced atomically (write, then
    rename). Where ``/dev/shm`` is missing or small, a temporary directory is used.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._owner: Any = None

    @classmethod
    def create(cls) -> SharedDirMemory:
        import shutil
        import tempfile
        import weakref

        base = _shm_base()
        _remove_stale(base)
        path = tempfile.mkdtemp(prefix=f"flowstage-mem-{os.getpid()}-", dir=base)
        memory = cls(path)
        # RAM is not given back by itself: remove the files at exit even if nobody closes us
        # (only here, in the executor's process; workers build instances from the descriptor).
        memory._owner = weakref.finalize(memory, shutil.rmtree, path, True)
        return memory

    def descriptor(self) -> dict[str, Any]:
        return {"factory": "flowstage.storage.object_store:SharedDirMemory", "path": self.path}

    def close(self) -> None:
        import shutil

        forget_backend(self.descriptor())
        if self._owner is not None:
            self._owner.detach()
        shutil.rmtree(self.path, ignore_errors=True)

    def describe(self) -> str:
        return f"shared memory of the local processes ({self.path})"

    def _file(self, namespace: str, key: str) -> str:
        from urllib.parse import quote

        name = quote(key, safe="")
        if len(name) > 200:
            import hashlib

            name = "h-" + hashlib.sha256(key.encode()).hexdigest()
        return os.path.join(self.path, namespace, name)

    def _check_open(self) -> None:
        if not os.path.isdir(self.path):
            msg = f"the cluster memory at {self.path} is gone: its local executor was closed"
            raise ObjectStoreError(msg)

    def put(self, namespace: str, key: str, pickled: Pickled) -> None:
        self._check_open()
        target = self._file(namespace, key)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        header = json.dumps(
            {
                "key": key,
                "type": pickled.type,
                "parts": [len(pickled.payload)] + [b.nbytes for b in pickled.buffers],
            }
        ).encode()
        temp = f"{os.path.dirname(target)}/.tmp-{uuid.uuid4().hex}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                for part in (
                    _MAGIC,
                    len(header).to_bytes(4, "little"),
                    header,
                    pickled.payload,
                    *pickled.buffers,
                ):
                    _write_all(fd, part)
            finally:
                os.close(fd)
            os.replace(temp, target)
        except BaseException as exc:
            _unlink(temp)
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                msg = (
                    f"{self.describe()} has no room for {key!r} in namespace {namespace!r} "
                    f"({pickled.size} bytes): {exc.strerror}"
                )
                raise MemoryFull(msg) from None
            raise

    def get(self, namespace: str, key: str) -> Any:
        try:
            fd = os.open(self._file(namespace, key), os.O_RDONLY)
        except FileNotFoundError:
            raise KeyError(key) from None
        try:
            size = os.fstat(fd).st_size
            if size >= _MMAP_FROM:
                import mmap

                # A private (copy-on-write) mapping: the value's buffers are the file's
                # pages until someone writes to them, and the file may be replaced or
                # removed meanwhile without touching this mapping.
                data: Any = memoryview(mmap.mmap(fd, size, access=mmap.ACCESS_COPY))
            else:
                data = memoryview(_read_all(fd, size))
        finally:
            os.close(fd)
        header, offset = _header(data)
        parts = []
        for length in header["parts"]:
            parts.append(data[offset : offset + length])
            offset += length
        return unpickle(parts[0], parts[1:])

    def delete(self, namespace: str, key: str) -> bool:
        try:
            os.unlink(self._file(namespace, key))
            return True
        except FileNotFoundError:
            return False

    def entries(self, namespace: str | None) -> list[dict[str, Any]]:
        out = []
        for ns in self._namespaces(namespace):
            folder = os.path.join(self.path, ns)
            for name in sorted(os.listdir(folder)):
                if name.startswith(".tmp-"):
                    continue
                try:
                    with open(os.path.join(folder, name), "rb") as f:
                        head = f.read(64 * 1024)
                        size = os.fstat(f.fileno()).st_size
                    header, _ = _header(memoryview(head))
                except (OSError, ValueError):
                    continue
                out.append(
                    {"namespace": ns, "key": header["key"], "size": size, "type": header["type"]}
                )
        return out

    def clear(self, namespace: str | None) -> int:
        import shutil

        count = 0
        for ns in self._namespaces(namespace):
            folder = os.path.join(self.path, ns)
            count += sum(1 for name in os.listdir(folder) if not name.startswith(".tmp-"))
            shutil.rmtree(folder, ignore_errors=True)
        return count

    def _namespaces(self, namespace: str | None) -> list[str]:
        if not os.path.isdir(self.path):
            return []
        names = sorted(os.listdir(self.path)) if namespace is None else [namespace]
        return [n for n in names if os.path.isdir(os.path.join(self.path, n))]


def _shm_base() -> str | None:
    """``/dev/shm`` when it is usable and not tiny (a container's default is 64 MB)."""
    import shutil

    base = "/dev/shm"
    try:
        if (
            os.path.isdir(base)
            and os.access(base, os.W_OK)
            and shutil.disk_usage(base).total >= 1 << 30
        ):
            return base
    except OSError:
        pass
    return None


def _remove_stale(base: str | None) -> None:
    """Remove the memory directories of local executors whose process has died."""
    import shutil
    import tempfile

    folder = base or tempfile.gettempdir()
    try:
        names = [n for n in os.listdir(folder) if n.startswith("flowstage-mem-")]
    except OSError:
        return
    for name in names:
        try:
            pid = int(name.split("-")[2])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _write_all(fd: int, data: Any) -> None:
    view = memoryview(data).cast("B")
    while view:
        written = os.write(fd, view[: 1 << 30])
        view = view[written:]


def _read_all(fd: int, size: int) -> bytearray:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = os.readv(fd, [view[got:]])
        if n == 0:
            break
        got += n
    return buffer


def _header(data: memoryview) -> tuple[dict[str, Any], int]:
    if bytes(data[:8]) != _MAGIC:
        raise ValueError("not a flowstage object file")
    length = int.from_bytes(data[8:12], "little")
    return json.loads(bytes(data[12 : 12 + length])), 12 + length


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# finding the tiers -----------------------------------------------------------------

_backends: dict[str, Any] = {}
_backends_lock = threading.Lock()
_outside = LocalMemory("this process (outside a run)")


def memory_backend(descriptor: dict[str, Any]) -> Any:
    """The backend a descriptor names, built once per process."""
    cache_key = json.dumps(descriptor, sort_keys=True, default=str)
    backend = _backends.get(cache_key)
    if backend is None:
        with _backends_lock:
            backend = _backends.get(cache_key)
            if backend is None:
                args = dict(descriptor)
                factory = _import(str(args.pop("factory")))
                backend = factory(**args)
                _backends[cache_key] = backend
    return backend


def forget_backend(descriptor: dict[str, Any]) -> None:
    """Drop the cached backend of a descriptor whose store was closed."""
    _backends.pop(json.dumps(descriptor, sort_keys=True, default=str), None)


def _import(spec: str) -> Callable[..., Any]:
    import importlib

    module, _, attr = spec.partition(":")
    try:
        target: Any = importlib.import_module(module)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        msg = f"cannot load the cluster memory backend {spec!r}: {type(exc).__name__}: {exc}"
        raise ObjectStoreError(msg) from None
    return target  # type: ignore[no-any-return]


def run_settings() -> dict[str, Any]:
    """What workers need from the driver's settings: where artifacts live and the size
    limit of ``fallback``. Resolved in the driver, so every worker of a run uses the same
    artifact location whatever its own environment (``context.extras["object_store"]``)."""
    from flowstage.core.settings import app_dir, load_settings

    settings = load_settings()
    url = settings.artifacts.url or (app_dir() / "artifacts").resolve().as_uri()
    return {
        "artifacts": {"url": url, "options": dict(settings.artifacts.options)},
        "memory_size_limit": settings.object_store.memory_size_limit,
    }


_settings_cache: dict[Any, dict[str, Any]] = {}


def _local_settings() -> dict[str, Any]:
    """:func:`run_settings` of this process, re-read when the settings change."""
    from flowstage.core.settings import settings_path

    path = settings_path()
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        mtime = None
    key = (
        str(path),
        mtime,
        tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("FLOWSTAGE__"))),
    )
    found = _settings_cache.get(key)
    if found is None:
        found = run_settings()
        _settings_cache.clear()
        _settings_cache[key] = found
    return found


class _Scope:
    """Where a call happens: its namespace, its stage (for messages) and its tiers."""

    def __init__(self, namespace: str | None, executor: Executor | None) -> None:
        context: RunContext | None = _current.get(None)
        self.context = context
        self.namespace = validate_namespace(
            namespace if namespace is not None else context.namespace if context else "default"
        )
        if context is None:
            self.where = "code outside a run"
        else:
            item = f" (item {context.item_index})" if context.item_index is not None else ""
            self.where = f"stage {context.stage!r}{item} of run {context.run.id}"
        self.settings = (
            context.extras.get("object_store") if context else None
        ) or _local_settings()
        self._executor = executor

    def memory(self) -> Any:
        """The cluster memory backend, or None when the executor has none."""
        if self._executor is not None:
            if not self._executor.started:
                msg = (
                    f"executor {self._executor.describe()!r} is not started: use it inside "
                    f"`with create_executor(...) as executor:`"
                )
                raise ObjectStoreError(msg)
            descriptor = self._executor.cluster_memory()
        elif self.context is None:
            return _outside
        else:
            descriptor = self.context.extras.get("cluster_memory")
        return None if descriptor is None else memory_backend(descriptor)

    def artifacts(self) -> Any:
        from flowstage.storage.artifacts import Location

        spec = self.settings["artifacts"]
        return Location.get(spec["url"], spec.get("options") or {})

    @property
    def size_limit(self) -> int:
        return int(self.settings["memory_size_limit"])


def _strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        msg = (
            f"unknown object store strategy {strategy!r} (expected one of: {', '.join(STRATEGIES)})"
        )
        raise ObjectStoreError(msg)
    return strategy


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
            f"no object {key!r} in namespace {scope.namespace!r} (object_store.get in {scope.where}; "
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
