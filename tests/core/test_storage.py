"""The storage layer: the in-process LRU, Redis for the cache and for rate-limit counters
(a real redis-server), and the one breaker."""

from __future__ import annotations

import socket
import sys
import time

import pytest
from limits import RateLimitItemPerMinute
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError

from inferd.core.storage import (
    ENTRY_BYTES,
    RETRY_AFTER_S,
    Breaker,
    MemoryStore,
    RedisCounters,
    RedisStore,
    StorageUnavailable,
    redacted,
    shared_store,
)
from inferd.errors import ConfigError
from tests.conftest import RedisServer, free_port


def taken(key: str, value: bytes) -> int:
    """What an entry of bytes takes in a MemoryStore: its key, its value, the store's own."""
    return sys.getsizeof(key) + sys.getsizeof(value) + ENTRY_BYTES


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_memory_store_evicts_the_least_recently_used_to_stay_in_its_bound() -> None:
    each = taken("a", b"x" * 9)
    store = MemoryStore(max_bytes=3 * each)
    await store.set("a", b"x" * 9, 60)
    await store.set("b", b"x" * 9, 60)
    await store.set("c", b"x" * 9, 60)
    assert await store.get("a") == b"x" * 9  # a is now the most recent
    await store.set("d", b"x" * 9, 60)
    assert await store.get("b") is None
    assert await store.get("a") is not None
    assert (store.bytes, store.evictions, len(store)) == (3 * each, 1, 3)


async def test_memory_store_skips_a_value_larger_than_its_bound() -> None:
    store = MemoryStore(max_bytes=taken("k", b"x" * 10) - 1)
    await store.set("k", b"x" * 10, 60)
    assert (await store.get("k"), store.bytes, store.evictions) == (None, 0, 0)


async def test_memory_store_entries_expire() -> None:
    clock = Clock()
    store = MemoryStore(max_bytes=10_000, clock=clock)
    await store.set("k", b"v", 5)
    clock.now += 4.9
    assert await store.get("k") == b"v"
    clock.now += 0.2
    assert await store.get("k") is None
    assert store.bytes == 0


async def test_memory_store_replacing_a_key_counts_its_bytes_once() -> None:
    store = MemoryStore(max_bytes=10_000)
    await store.set("k", b"12345", 60)
    await store.set("k", b"12", 60)
    assert (store.bytes, len(store)) == (taken("k", b"12"), 1)


async def test_memory_store_drops_a_prefix() -> None:
    store = MemoryStore(max_bytes=10_000)
    for key in ("m:a:1", "m:a:2", "m:b:1"):
        await store.set(key, b"v", 60)
    store.drop_prefix("m:a:")
    assert [await store.get(k) for k in ("m:a:1", "m:a:2", "m:b:1")] == [None, None, b"v"]


async def test_redis_store_round_trip_with_expiry(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.uri, timeout_s=1.0)
    try:
        await store.set("k", b"\x00\xffbytes", 60)
        assert await store.get("k") == b"\x00\xffbytes"
        assert await store.get("missing") is None
        assert await store.get("k") == b"\x00\xffbytes"
    finally:
        await store.close()


async def test_redis_down_is_unavailable_at_once_after_the_first_failure() -> None:
    clock = Clock()
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.05, clock=clock)
    try:
        with pytest.raises(StorageUnavailable, match="redis"):
            await store.get("k")
        with pytest.raises(StorageUnavailable, match="a moment ago"):
            await store.set("k", b"v", 1)
        clock.now += 1.5  # past retry_after_s: the next call tries Redis again
        with pytest.raises(StorageUnavailable, match="ConnectionError"):
            await store.get("k")
    finally:
        await store.close()


def test_shared_store_is_chosen_by_scheme() -> None:
    assert shared_store(None, 0.05) is None
    assert isinstance(shared_store("redis://127.0.0.1:1/0", 0.05), RedisStore)
    with pytest.raises(ConfigError, match="unknown scheme 'memcached'"):
        shared_store("memcached://x", 0.05)


async def test_redis_store_writes_the_ttl(redis_server: RedisServer) -> None:
    import redis.asyncio

    store = RedisStore(redis_server.uri, timeout_s=1.0)
    client = redis.asyncio.Redis.from_url(redis_server.uri)
    try:
        await store.set("k", b"v", 300)
        assert 299_000 < await client.pttl("k") <= 300_000
    finally:
        await store.close()
        await client.aclose()


async def test_a_redis_that_never_answers_costs_one_timeout() -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        uri = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        store = RedisStore(uri, timeout_s=0.05)
        try:
            started = time.monotonic()
            with pytest.raises(StorageUnavailable, match="Timeout"):
                await store.get("k")
            # 50 ms per call; a generous bound so that a busy machine does not fail it.
            assert time.monotonic() - started < 1.0
        finally:
            await store.close()


def test_the_breaker_stays_open_for_its_retry_after_each_failure() -> None:
    clock = Clock()
    breaker = Breaker(clock=clock)
    assert not breaker.open
    breaker.trip()
    assert breaker.open
    clock.now += RETRY_AFTER_S - 0.01
    assert breaker.open
    clock.now += 0.01
    assert not breaker.open


async def test_redis_counters_are_shared_by_every_holder(redis_server: RedisServer) -> None:
    """Two replicas' counters over one Redis take hits from one budget, under the prefix."""
    import redis.asyncio

    item = RateLimitItemPerMinute(3)
    first = RedisCounters(redis_server.uri, 1.0, "test-prefix")
    second = RedisCounters(redis_server.uri, 1.0, "test-prefix")
    client = redis.asyncio.Redis.from_url(redis_server.uri)
    try:
        hits = [FixedWindowRateLimiter(c.storage) for c in (first, second, first)]
        assert [await h.hit(item, "addr:a") for h in hits] == [True, True, True]
        assert not await FixedWindowRateLimiter(second.storage).hit(item, "addr:a")
        assert [k.decode() async for k in client.scan_iter()] == [
            f"test-prefix:{item.key_for('addr:a')}"
        ]
    finally:
        await first.close()
        await second.close()
        await client.aclose()


async def test_redis_counters_fail_within_their_timeout() -> None:
    counters = RedisCounters(f"redis://127.0.0.1:{free_port()}/0", 0.05, "p")
    try:
        started = time.monotonic()
        with pytest.raises(StorageError, match="connecting to"):  # wrapped by `limits`
            await FixedWindowRateLimiter(counters.storage).hit(RateLimitItemPerMinute(1), "a")
        assert time.monotonic() - started < 1.0
        assert not counters.breaker.open  # the caller decides when to trip it
    finally:
        await counters.close()


def test_a_uri_is_logged_without_its_password() -> None:
    assert redacted("redis://:secret@cache:6379/0") == "redis://***@cache:6379/0"
    assert redacted("redis://cache:6379/0") == "redis://cache:6379/0"
