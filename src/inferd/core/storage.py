"""Shared state behind one small interface: an in-process store or Redis.

Replicas keep nothing that another replica needs; what they share (the prediction cache
today, rate-limit counters later) goes through a :class:`Store`. The backend comes from
the table :data:`BACKENDS`, keyed by the URI scheme of ``storage.redis_uri`` (no URI: the
in-process store). A store that cannot answer raises :class:`StorageUnavailable`, within
the store's timeout; callers decide what that means for them.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final, Protocol

from inferd.errors import ConfigError


class StorageUnavailable(Exception):
    """The store did not answer in time or refused (Redis down, network, timeout)."""


class Store(Protocol):
    """Bytes by key, each with a time to live."""

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None: ...

    async def close(self) -> None: ...


class MemoryStore:
    """An in-process LRU bounded in bytes (keys and values counted); entries also expire.

    ``evictions`` counts entries pushed out to make room; a value larger than the whole
    bound is not stored.
    """

    def __init__(self, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evictions = 0
        self._clock = clock
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        size = len(key) + len(value)
        if size > self.max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        while self.bytes + size > self.max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)
            self.evictions += 1
        self._entries[key] = (value, self._clock() + ttl_s)
        self.bytes += size

    def drop_prefix(self, prefix: str) -> None:
        """Forget every entry whose key starts with ``prefix``."""
        for key in [k for k in self._entries if k.startswith(prefix)]:
            self._drop(key)

    def _drop(self, key: str) -> None:
        value, _ = self._entries.pop(key)
        self.bytes -= len(key) + len(value)

    async def close(self) -> None:
        self._entries.clear()
        self.bytes = 0


class RedisStore:
    """Redis (``redis://``, ``rediss://``, ``unix://``), every call bounded by ``timeout_s``.

    After a failure the store answers :class:`StorageUnavailable` at once for
    ``retry_after_s`` instead of waiting out a timeout on every request.
    """

    def __init__(
        self,
        uri: str,
        timeout_s: float,
        retry_after_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import redis.asyncio

        self._client: Any = redis.asyncio.Redis.from_url(
            uri,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry_on_timeout=False,
        )
        self._retry_after_s = retry_after_s
        self._clock = clock
        self._down_until = 0.0

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        import redis.exceptions

        if self._clock() < self._down_until:
            raise StorageUnavailable("redis was unreachable a moment ago")
        try:
            return await getattr(self._client, method)(*args, **kwargs)
        except (redis.exceptions.RedisError, OSError, TimeoutError) as exc:
            self._down_until = self._clock() + self._retry_after_s
            raise StorageUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self._call("get", key)
        return value

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._call("set", key, value, px=max(1, int(ttl_s * 1000)))

    async def close(self) -> None:
        await self._client.aclose()


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
