"""The stage cache in the driver: calls and map items the cache has are not made.

The check happens in the driver, before anything is submitted, so it is the same on
every executor: a cached call's arguments are fetched to the driver (on Dask or Ray,
dependencies' outputs travel there once) to compute its key, and a miss's output is
fetched to be stored. A map asks for all its items at once; the hits become known
items (as a retry's are) and only the others are called.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from flowstage.core.caching import cache_threads
from flowstage.core.mapping import MapStream
from flowstage.core.value_size import is_small

if TYPE_CHECKING:
    from flowstage.core.caching import StageCache

T = TypeVar("T")


class CacheHost(Protocol):
    """What the cache needs of the stage it serves (the scheduler's ``StageExecution``)."""

    known_items: dict[int, Any] | None

    async def fetch(self, value: Any) -> Any: ...


class CachedCalls:
    """One stage's calls through its cache (every method passes through without one)."""

    def __init__(self, host: CacheHost, cache: StageCache | None) -> None:
        self.host = host
        self.cache = cache
        #: the cache keys of the map's items, by position
        self._item_keys: list[str] = []

    async def _lookup(self, keys: list[str]) -> dict[int, Any]:
        """The cache's values of ``keys``: in a thread when the store is remote (it
        blocks on the network) or the entries are big (unpickling them would hold up
        the event loop), else at once (a small local file costs less than a thread hop)."""
        cache = self.cache
        assert cache is not None
        if not cache.lookup_blocks(keys):
            return cache.lookup(keys)
        return await cache_threads.run(cache.lookup, keys)

    @staticmethod
    async def _key(fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, a key of these arguments: in a thread unless they are small
        (digesting a big one pickles it)."""
        if is_small(args):
            return fn(*args)
        return await cache_threads.run(fn, *args)

    async def call(
        self, call: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """``call(*args, **kwargs)``, unless the cache has its output; a miss is stored.

        :raises CacheKeyError: an argument cannot enter the key
        """
        cache = self.cache
        if cache is None:
            return await call(*args, **kwargs)
        values = [await self.host.fetch(arg) for arg in args]
        key = await self._key(cache.call_key, values, kwargs)
        found = await self._lookup([key])
        if found:
            return found[0]
        handle = await call(*args, **kwargs)
        cache.save_later([(key, await self.host.fetch(handle))])
        return handle

    async def ask(self, items: Any, extra_args: Sequence[Any], extra_kwargs: dict[str, Any]) -> Any:
        """A map's ``items`` (a sequence, once a cached map has them whole); the cache's
        hits become the host's known items.

        :raises CacheKeyError: an item or argument cannot enter the key
        """
        cache = self.cache
        if cache is None:
            return items
        if isinstance(items, MapStream):
            items = await items.result()
        extra = [await self.host.fetch(arg) for arg in extra_args]
        self._item_keys = await self._key(cache.item_keys, items, extra, extra_kwargs)
        found = await self._lookup(self._item_keys)
        if found:
            self.host.known_items = {**found, **(self.host.known_items or {})}
        return items

    def returned(self, start: int, values: list[Any], failed: set[int]) -> None:
        """A batch of map items came back: store the items that did not fail."""
        if self.cache is None:
            return
        keys = self._item_keys
        self.cache.save_later(
            [
                (keys[start + offset], value)
                for offset, value in enumerate(values)
                if start + offset not in failed
            ]
        )
