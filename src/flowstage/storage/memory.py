"""Cluster memory of the local executor (a dict in this process; shared files between
worker processes) and how a worker finds the cluster memory of any executor from
the descriptor the run context carries."""

from __future__ import annotations

import errno
import json
import os
import threading
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

from flowstage.core.errors import MemoryFull, ObjectStoreError
from flowstage.storage.pickling import Pickled, unpickle
from flowstage.storage.processes import running_since


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
        return {"factory": "flowstage.storage.memory:LocalMemory.attach", "id": self.id}

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
        path = tempfile.mkdtemp(prefix=f"flowstage-mem-{_owner_tag(os.getpid())}-", dir=base)
        memory = cls(path)
        # RAM is not given back by itself: remove the files at exit even if nobody closes us
        # (only here, in the executor's process; workers build instances from the descriptor).
        memory._owner = weakref.finalize(memory, shutil.rmtree, path, True)
        return memory

    def descriptor(self) -> dict[str, Any]:
        return {"factory": "flowstage.storage.memory:SharedDirMemory", "path": self.path}

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
                # lazy: only reads of shared memory need mmap
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
    """Remove the memory directories of local executors whose process has died.

    A directory is named ``flowstage-mem-<pid>-<start time>-<pid namespace>-<random>``.
    Containers sharing ``/dev/shm`` see each other's directories but not each other's
    processes, and pids are reused: only a directory of this pid namespace whose pid is
    gone, or now belongs to a process that started at another time, is removed. Names
    without a namespace (older flowstage versions) are left alone.
    """
    import shutil
    import tempfile

    folder = base or tempfile.gettempdir()
    try:
        names = [n for n in os.listdir(folder) if n.startswith("flowstage-mem-")]
    except OSError:
        return
    namespace = _pid_namespace()
    for name in names:
        parts = name.split("-")
        if len(parts) != 6 or parts[4] != namespace or not parts[2].isdigit():
            continue
        pid, started = int(parts[2]), parts[3]
        if pid == os.getpid():
            continue
        # no /proc: no start times ("0"), and the pid alone has to do
        gone = not _pid_exists(pid) if started == "0" else running_since(pid) != started
        if gone:
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, under another user
    return True


def _owner_tag(pid: int) -> str:
    """``<pid>-<start time>-<pid namespace>``: who owns a memory directory."""
    return f"{pid}-{running_since(pid) or 0}-{_pid_namespace()}"


def _pid_namespace() -> str:
    """The inode of this process's pid namespace (``0`` where there is no ``/proc``)."""
    try:
        link = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return "0"
    return "".join(c for c in link if c.isdigit()) or "0"


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
