"""Stage result caching: what a cache key is made of, and how a run asks the cache.

A stage with ``cache:`` has its result stored under a key; a later call with the same
key takes the stored result instead of calling the target. The key is a digest of:

- the stage's target, as its import string (always);
- ``code``: the target's source, and the module-level code it uses (see
  :func:`~flowstage.core.code_digest.code_digest`);
- ``config``: the run's merged config data;
- ``inputs``: the call's arguments (for a map, per item: the item and the other arguments).

The driver checks the cache (the same code on every executor): a hit costs no call, and
a map calls only its items that missed. Entries live in a :class:`CacheStore` (the
artifact store, so an ``s3://`` artifact URL shares them between machines).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

from flowstage.core.code_digest import code_digest
from flowstage.core.errors import UserError
from flowstage.core.targets import resolve_target
from flowstage.core.threads import SharedThreads
from flowstage.core.value_digest import value_digest
from flowstage.core.value_size import INLINE_BYTES, is_small

if TYPE_CHECKING:
    from flowstage.core.models import Stage

#: ``run_workflow(cache=...)``: use entries, ignore them and write new ones, or no cache
CacheMode = Literal["use", "refresh", "off"]
#: bumped when the key's recipe changes, so old entries stop matching
KEY_VERSION = b"flowstage-cache-1"
#: a lookup of more keys than this (a map's items) goes to a thread without a look
_INLINE_KEYS = 16


class CacheKeyError(UserError):
    """A cached stage's key cannot be computed: an argument is neither JSON nor picklable."""


def cache_mode(value: bool | str) -> CacheMode:
    """``True``/``"use"``, ``"refresh"`` or ``False``/``"off"`` as a :data:`CacheMode`.

    :raises UserError: any other value
    """
    if value is True or value == "use":
        return "use"
    if value is False or value == "off":
        return "off"
    if value == "refresh":
        return "refresh"
    msg = f"cache={value!r}: expected True, False or 'refresh'"
    raise UserError(msg)


class CacheStore(Protocol):
    """Where cache entries are kept. Reads never fail: a missing, corrupt or expired
    entry is a miss (with a warning for a corrupt one)."""

    #: reads and writes block on the network: the driver makes them off its event loop
    remote: bool

    def load_many(self, keys: Sequence[str]) -> dict[int, Any]:
        """The values found for ``keys``, by position in ``keys``. An entry whose expiry
        (set when it was written, from the stage's ``expire`` then) has passed is a miss."""
        ...

    def read_size(self, keys: Sequence[str]) -> int:
        """About how many bytes reading ``keys`` takes (missing entries count 0); asked
        of a local store only, so it must be cheap there (a stat per key)."""
        ...

    def save(self, key: str, value: Any, info: Mapping[str, Any]) -> None:
        """Store ``value`` under ``key`` atomically, with ``info`` (stage, workflow,
        target, expiry) for listings. A value that cannot be stored is skipped with a
        warning: the run goes on."""
        ...


# -- one stage of a run -----------------------------------------------------------------


class StageCache:
    """The cache as one stage of a run sees it: its keys, lookups and writes."""

    def __init__(
        self,
        stage: Stage,
        store: CacheStore,
        mode: CacheMode,
        config: Mapping[str, Any],
        search_paths: Sequence[str],
        workflow: str,
        writes: list[concurrent.futures.Future[None]],
    ) -> None:
        """:raises CacheKeyError: the config, or a value the code closes over, cannot be
        digested"""
        assert stage.cache is not None  # only cached stages get one
        self.stage = stage.name
        self.store = store
        self.refresh = mode == "refresh"
        #: seconds an entry written now stays valid (its expiry is fixed at writing)
        self.max_age = stage.cache.expire
        self.parts = frozenset(stage.cache.key)
        base = hashlib.blake2b(KEY_VERSION, digest_size=16)
        base.update(stage.target_name.encode())
        if "code" in self.parts:
            target = resolve_target(stage.target, search_paths)
            base.update(b"code" + self._digest(target, "its code", "code", code_digest))
        if "config" in self.parts:
            base.update(b"config" + self._digest(dict(config), "the run config", "config"))
        self._base = base
        self.info = {"stage": stage.name, "workflow": workflow, "target": stage.target_name}
        #: writes still going, shared by the run's stages
        self.writes: list[concurrent.futures.Future[None]] = writes
        #: calls (map items) that took a stored result, and all calls asked about
        self.hits = 0
        self.calls = 0

    def _digest(
        self,
        value: Any,
        what: str,
        part: str = "inputs",
        digest: Callable[[Any], bytes] = value_digest,
    ) -> bytes:
        try:
            return digest(value)
        except TypeError as exc:
            msg = (
                f"stage {self.stage!r}: cannot compute its cache key: {what}: {exc}; "
                f"leave {part!r} out of its `cache.key`, or remove `cache:` from the stage"
            )
            raise CacheKeyError(msg) from None

    def _key(self, *parts: bytes) -> str:
        digest = self._base.copy()
        for part in parts:
            digest.update(part)
        return digest.hexdigest()

    def _arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any], first: int) -> bytes:
        if "inputs" not in self.parts:
            return b""
        digests = [
            self._digest(arg, f"argument {first + i} (a {type(arg).__name__})")
            for i, arg in enumerate(args)
        ]
        digests += [
            key.encode() + b"=" + self._digest(kwargs[key], f"argument {key!r}")
            for key in sorted(kwargs)
        ]
        return b"args" + b"".join(digests)

    def call_key(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
        """The key of one call with these (fetched) arguments.

        :raises CacheKeyError: an argument can be neither JSON-encoded nor pickled
        """
        return self._key(self._arguments(args, kwargs, 0))

    def item_keys(
        self, items: Sequence[Any], extra_args: Sequence[Any], extra_kwargs: Mapping[str, Any]
    ) -> list[str]:
        """The keys of a map's items (the other arguments are digested once). Without
        ``inputs`` in the key, an item's key is its position in the map.

        :raises CacheKeyError: an item or argument can be neither JSON-encoded nor pickled
        """
        rest = self._arguments(extra_args, extra_kwargs, 1)
        if "inputs" not in self.parts:
            return [self._key(b"item", str(i).encode()) for i in range(len(items))]
        return [
            self._key(rest, b"item", self._digest(item, f"map item {i} (a {type(item).__name__})"))
            for i, item in enumerate(items)
        ]

    def lookup_blocks(self, keys: Sequence[str]) -> bool:
        """Whether :meth:`lookup` of ``keys`` may take long enough to belong in a thread:
        a remote store, many keys, or big entries."""
        if self.refresh or not keys:
            return False
        if self.store.remote or len(keys) > _INLINE_KEYS:
            return True
        return self.store.read_size(keys) > INLINE_BYTES

    def lookup(self, keys: Sequence[str]) -> dict[int, Any]:
        """The stored values of ``keys`` by position (none when refreshing); counted."""
        self.calls += len(keys)
        if self.refresh or not keys:
            return {}
        found = self.store.load_many(keys)
        self.hits += len(found)
        return found

    def save(self, key: str, value: Any) -> None:
        """Store a call's value (never fails the run: see :meth:`CacheStore.save`)."""
        self.store.save(key, value, {**self.info, "expire": self.max_age})

    def save_later(self, entries: Sequence[tuple[str, Any]]) -> None:
        """Store ``(key, value)`` entries: small values in a local store at once (a write
        costs about 0.1 ms, less than a thread hop on a busy machine), else in a writer
        thread while the run goes on (pickling a big value would hold up the event loop);
        the run waits for those before it returns (:meth:`RunCache.flush`)."""
        if not entries:
            return
        if not self.store.remote and is_small([value for _, value in entries]):
            self._save_all(list(entries))
            return
        self.writes.append(cache_threads.submit(self._save_all, list(entries)))

    def _save_all(self, entries: list[tuple[str, Any]]) -> None:
        for key, value in entries:
            self.save(key, value)

    @property
    def all_hit(self) -> bool:
        """Every call of the stage took a stored result (the stage state is ``cached``)."""
        return self.calls > 0 and self.hits == self.calls

    @property
    def note(self) -> str | None:
        """What the run record says about the cache on this stage."""
        if self.all_hit:
            return "taken from the cache"
        if self.hits:
            return f"{self.hits} of {self.calls} item(s) taken from the cache"
        return None


class RunCache:
    """The cache of one run: a :class:`StageCache` per cached stage, made on first use."""

    def __init__(
        self,
        store: CacheStore,
        mode: CacheMode,
        config: Mapping[str, Any],
        search_paths: Sequence[str],
        workflow: str,
    ) -> None:
        self.store = store
        self.mode = mode
        self.config = config
        self.search_paths = search_paths
        self.workflow = workflow
        self.writes: list[concurrent.futures.Future[None]] = []

    def for_stage(self, stage: Stage) -> StageCache | None:
        """``stage``'s cache, or None when it is not cached (or caching is off).

        :raises CacheKeyError: the config cannot be digested
        """
        if stage.cache is None or self.mode == "off":
            return None
        return StageCache(
            stage,
            self.store,
            self.mode,
            self.config,
            self.search_paths,
            self.workflow,
            self.writes,
        )

    async def flush(self) -> None:
        """Wait until every entry of the run is written."""
        while self.writes:
            await asyncio.wrap_future(self.writes.pop())


#: threads that key, read and write big or remote cache entries while the run goes on
cache_threads = SharedThreads(4, "flowstage-cache")
