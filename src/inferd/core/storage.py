"""Shared state: the one place that knows Redis, and the one breaker policy.

Replicas keep nothing that another replica needs; what they share goes through here:
- the prediction cache, through a :class:`Store` (bytes by key): :class:`MemoryStore` in
  process, or :class:`RedisStore` from the table :data:`BACKENDS`, keyed by the URI
  scheme of ``storage.redis_uri`` (:func:`shared_store`);
- rate-limit counters, through :class:`RedisCounters`: the same Redis URIs handed to the
  ``limits`` library as its asynchronous storage (the limiter keeps in-process counters
  itself).

Every Redis call is bounded by ``storage.timeout_ms`` and never retried. After a failure,
the :class:`Breaker` keeps callers from trying Redis again for :data:`RETRY_AFTER_S`: a
:class:`Store` raises :class:`StorageUnavailable` at once, the limiter answers per its
failure mode. Callers decide what a failure means for them.
"""

from __future__ import annotations

import math
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

from inferd.errors import ConfigError

if TYPE_CHECKING:
    from limits.aio.storage import RedisStorage

#: After a failure, how long Redis is not tried again.
RETRY_AFTER_S: Final = 1.0


class StorageUnavailable(Exception):
    """The store did not answer in time or refused (Redis down, network, timeout)."""


class Breaker:
    """Open for ``retry_after_s`` after each failure: while open, callers do not try the
    storage and answer at once as if it had failed."""

    def __init__(
        self, retry_after_s: float = RETRY_AFTER_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.retry_after_s = retry_after_s
        self._clock = clock
        self._down_until = -math.inf

    @property
    def open(self) -> bool:
        return self._clock() < self._down_until

    def trip(self) -> None:
        """A call failed: stay open for ``retry_after_s`` from now."""
        self._down_until = self._clock() + self.retry_after_s


class Store(Protocol):
    """Bytes by key, each with a time to live."""

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None: ...

    async def close(self) -> None: ...


#: Bytes an entry takes in a :class:`MemoryStore` besides its key and value: its (value,
#: expiry, size) tuple, the expiry's float, the size's int, and its place in the ordered
#: dict (a slot of the table and a link: 65-130 bytes on CPython 3.11 as the table fills).
ENTRY_BYTES: Final = (
    sys.getsizeof((None, 0.0, 0)) + sys.getsizeof(0.0) + sys.getsizeof(1 << 20) + 96
)


class MemoryStore:
    """An in-process LRU bounded in the bytes its entries take (keys, values and the
    store's own objects); entries also expire.

    ``evictions`` counts entries pushed out to make room; a value larger than the whole
    bound is not stored. :meth:`get` and :meth:`set` hold bytes (a :class:`Store`);
    :meth:`lookup` and :meth:`put` hold any value, counted at the size it is put with.
    """

    def __init__(self, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evictions = 0
        self._clock = clock
        #: Key -> (value, when it expires, its size with the key's).
        self._entries: OrderedDict[str, tuple[Any, float, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = self.lookup(key)
        return value

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self.put(key, value, sys.getsizeof(value), ttl_s)

    def lookup(self, key: str) -> Any:
        """The value under ``key`` (None when there is none, or it expired), without a
        coroutine (the prediction cache's hot path)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, expires, _ = entry
        if expires <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: str, value: Any, size: int, ttl_s: float) -> None:
        """Keep ``value`` (``size`` bytes in the process; the key's and the entry's are
        added) under ``key``, without a coroutine."""
        size += sys.getsizeof(key) + ENTRY_BYTES
        if size > self.max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        while self.bytes + size > self.max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)
            self.evictions += 1
        self._entries[key] = (value, self._clock() + ttl_s, size)
        self.bytes += size

    def drop_prefix(self, prefix: str) -> None:
        """Forget every entry whose key starts with ``prefix``."""
        for key in [k for k in self._entries if k.startswith(prefix)]:
            self._drop(key)

    def _drop(self, key: str) -> None:
        self.bytes -= self._entries.pop(key)[2]

    async def close(self) -> None:
        self._entries.clear()
        self.bytes = 0


class RedisStore:
    """Redis (``redis://``, ``rediss://``, ``unix://``), every call bounded by ``timeout_s``.

    After a failure the store answers :class:`StorageUnavailable` at once for
    ``retry_after_s`` (its :class:`Breaker`) instead of waiting out a timeout on every
    request.
    """

    def __init__(
        self,
        uri: str,
        timeout_s: float,
        retry_after_s: float = RETRY_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import redis.asyncio

        self._client: Any = redis.asyncio.Redis.from_url(
            uri,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry_on_timeout=False,
        )
        self._breaker = Breaker(retry_after_s, clock)

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        import redis.exceptions

        if self._breaker.open:
            raise StorageUnavailable("redis was unreachable a moment ago")
        try:
            return await getattr(self._client, method)(*args, **kwargs)
        except (redis.exceptions.RedisError, OSError, TimeoutError) as exc:
            self._breaker.trip()
            raise StorageUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self._call("get", key)
        return value

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._call("set", key, value, px=max(1, int(ttl_s * 1000)))

    async def close(self) -> None:
        await self._client.aclose()


class RedisCounters:
    """Redis as the ``limits`` library's asynchronous storage, for counters every worker
    and replica shares; keys start with ``key_prefix``.

    Its connections wait at most ``timeout_s`` and are never retried (the caller bounds a
    whole check by ``timeout_s`` too). The caller trips :attr:`breaker` when a call fails
    and does not call while it is open.
    """

    def __init__(
        self,
        uri: str,
        timeout_s: float,
        key_prefix: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from limits.aio.storage import RedisStorage
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.uri = uri
        self.timeout_s = timeout_s
        self.breaker = Breaker(clock=clock)
        self.storage: RedisStorage = RedisStorage(
            "async+" + uri.replace("unix://", "redis+unix://", 1),
            implementation="redispy",
            key_prefix=key_prefix,
            wrap_exceptions=True,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),  # type: ignore[arg-type]  # redis-py option, passed through
        )

    async def close(self) -> None:
        """Release its connections."""
        bridge: Any = getattr(self.storage, "bridge", None)
        client: Any = getattr(bridge, "storage", None)
        if client is not None:
            await client.aclose()


def redacted(uri: str) -> str:
    """A storage URI without its password (for the log)."""
    scheme, sep, rest = uri.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    return scheme + sep + rest


#: URI scheme -> the shared store it names.
BACKENDS: Final[dict[str, Callable[[str, float], Store]]] = {
    "redis": RedisStore,
    "rediss": RedisStore,
    "unix": RedisStore,
}


def shared_store(uri: str | None, timeout_s: float) -> Store | None:
    """The store replicas share, from ``storage.redis_uri``; None when none is configured
    (each process then keeps its own state)."""
    if not uri:
        return None
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    backend = BACKENDS.get(scheme)
    if backend is None:
        raise ConfigError(
            f"storage.redis_uri: unknown scheme {scheme!r}; expected one of {sorted(BACKENDS)}"
        )
    return backend(uri, timeout_s)
