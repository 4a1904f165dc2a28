"""The rate limiter on `limits`: budgets per principal and model, storage failure modes."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest
from limits import RateLimitItemPerMinute
from limits.strategies import FixedWindowRateLimiter

from inferd.core.storage import RETRY_AFTER_S
from inferd.errors import ConfigError, RateLimited, Unavailable
from inferd.gateway.ratelimit import (
    STRATEGIES,
    SWEEP_S,
    LocalRateLimiter,
    RateLimiter,
    SharedRateLimiter,
    SweptMemoryStorage,
    limiter_for,
    rate_limiter,
    storage_uri,
)
from inferd.metrics import Metrics
from inferd.settings import RateLimitSettings, StorageSettings
from tests.conftest import free_port


def limiter(
    per_minute: int = 3, storage: StorageSettings | None = None, **settings: Any
) -> RateLimiter:
    limit = RateLimitSettings(enabled=True, requests_per_minute=per_minute, **settings)
    return limiter_for(limit, storage or StorageSettings())


def test_off_by_default() -> None:
    assert rate_limiter(RateLimitSettings(), StorageSettings()) is None


def test_the_default_window_is_fixed() -> None:
    assert RateLimitSettings().strategy == "fixed-window"


def test_memory_counters_are_kept_in_process_and_redis_ones_shared() -> None:
    assert isinstance(limiter(), LocalRateLimiter)
    shared = limiter(storage=StorageSettings(redis_uri="redis://127.0.0.1:1/0"))
    assert isinstance(shared, SharedRateLimiter)


@pytest.mark.parametrize("strategy", ["fixed-window", "sliding-window", "moving-window"])
async def test_the_budget_then_refusal_with_the_window(strategy: str) -> None:
    limit = limiter(per_minute=3, strategy=strategy)
    for _ in range(3):
        await limit.check("addr:a")
    with pytest.raises(RateLimited, match="3 requests per minute") as refused:
        await limit.check("addr:a")
    assert (refused.value.limit, refused.value.remaining) == (3, 0)
    assert 0 < refused.value.reset_s <= 60
    assert refused.value.retry_after_s == refused.value.reset_s
    assert refused.value.fields()["ratelimit-limit"] == "3"


async def test_principals_have_separate_budgets() -> None:
    limit = limiter(per_minute=1)
    await limit.check("addr:10.0.0.1")
    await limit.check("addr:10.0.0.2")
    with pytest.raises(RateLimited):
        await limit.check("addr:10.0.0.1")


async def test_one_budget_for_every_model_unless_per_model() -> None:
    shared = limiter(per_minute=1)
    await shared.check("addr:a", "tiny")
    with pytest.raises(RateLimited):
        await shared.check("addr:a", "wide")
    separate = limiter(per_minute=1, per_model=True)
    await separate.check("addr:a", "tiny")
    await separate.check("addr:a", "wide")
    with pytest.raises(RateLimited):
        await separate.check("addr:a", "tiny")


def test_the_storage_is_the_limits_own_then_the_shared_redis_then_memory() -> None:
    shared = StorageSettings(redis_uri="redis://cache:6379/0")
    own = RateLimitSettings(storage_uri="redis://limits:6379/1")
    assert storage_uri(own, shared) == "redis://limits:6379/1"
    assert storage_uri(RateLimitSettings(), shared) == "redis://cache:6379/0"
    assert storage_uri(RateLimitSettings(), StorageSettings()) == "memory://"
    forced = RateLimitSettings(storage_uri="memory://")
    assert storage_uri(forced, shared) == "memory://"


def test_an_unknown_storage_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="expected memory://, redis://"):
        RateLimitSettings(storage_uri="memcached://x")
    settings = RateLimitSettings.model_construct(storage_uri="mongodb://x")
    with pytest.raises(ConfigError, match="unknown scheme 'mongodb'"):
        limiter_for(settings, StorageSettings())


async def test_an_in_memory_check_never_suspends() -> None:
    """It runs to its end when first stepped: no await on a storage, no timeout scope."""
    limit = limiter(per_minute=1)
    admitted = limit.check("addr:a")
    with pytest.raises(StopIteration):
        admitted.send(None)
    refused = limit.check("addr:a")
    with pytest.raises(RateLimited):
        refused.send(None)


@pytest.mark.parametrize("strategy", ["fixed-window", "sliding-window", "moving-window"])
async def test_hits_land_where_the_librarys_strategy_counts_them(strategy: str) -> None:
    """The in-process limiter calls the storage as the ``limits`` strategy does: that
    strategy, over the same storage, sees the hits in the principal's window and takes its
    own from the same budget."""
    limit = limiter(per_minute=5, strategy=strategy, per_model=True)
    assert isinstance(limit, LocalRateLimiter)
    for _ in range(3):
        await limit.check("addr:a", "tiny")
    library = STRATEGIES[strategy](limit.storage)
    assert library.get_window_stats(limit.item, "addr:a", "tiny").remaining == 2
    assert library.get_window_stats(limit.item, "addr:a", "wide").remaining == 5
    assert library.hit(limit.item, "addr:a", "tiny")
    await limit.check("addr:a", "tiny")
    with pytest.raises(RateLimited) as refused:
        await limit.check("addr:a", "tiny")
    assert refused.value.remaining == 0
    assert not library.hit(limit.item, "addr:a", "tiny")


def closed_port() -> int:
    """A loopback port nothing listens on (connecting is refused at once)."""
    return free_port()


def silent_port() -> tuple[socket.socket, int]:
    """A loopback port that accepts connections and never answers (backlog only)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock, sock.getsockname()[1]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def unreachable(mode: str, port: int, clock: Clock, metrics: Metrics) -> RateLimiter:
    settings = RateLimitSettings(
        enabled=True,
        requests_per_minute=1,
        storage_uri=f"redis://127.0.0.1:{port}/0",
        failure_mode=mode,  # type: ignore[arg-type]
    )
    return limiter_for(settings, StorageSettings(timeout_ms=50), metrics, clock=clock)


def failures(metrics: Metrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "inferd_rate_limit_storage_failures_total", {"outcome": outcome}
    )
    return value or 0.0


async def test_storage_down_fail_open_admits_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    metrics, clock = Metrics(), Clock()
    limit = unreachable("open", closed_port(), clock, metrics)
    for _ in range(3):  # past the limit of 1: nothing is counted, everything admitted
        await limit.check("addr:a")
    assert failures(metrics, "admitted") == 3
    warnings = [r for r in caplog.records if "rate limit storage" in r.getMessage()]
    assert len(warnings) == 1  # logged once per interval
    assert "failure_mode: open" in warnings[0].getMessage()
    await limit.close()


async def test_storage_down_fail_closed_refuses_503() -> None:
    metrics, clock = Metrics(), Clock()
    limit = unreachable("closed", closed_port(), clock, metrics)
    with pytest.raises(Unavailable, match="rate limit storage unreachable") as refused:
        await limit.check("addr:a")
    assert refused.value.retry_after_s == RETRY_AFTER_S
    assert failures(metrics, "refused") == 1
    await limit.close()


async def test_a_silent_storage_costs_one_timeout_then_none_until_the_retry() -> None:
    """A storage that accepts and never answers: the first check waits the timeout, the
    next ones (until RETRY_AFTER_S has passed) do not try it at all."""
    sock, port = silent_port()
    metrics, clock = Metrics(), Clock()
    limit = unreachable("open", port, clock, metrics)
    try:
        started = time.monotonic()
        await limit.check("addr:a")
        first = time.monotonic() - started
        started = time.monotonic()
        for _ in range(20):
            await limit.check("addr:a")
        rest = time.monotonic() - started
        assert first < 0.2  # 50 ms timeout, with room for a loaded machine
        assert rest < 0.05
        assert failures(metrics, "admitted") == 21
        clock.now += RETRY_AFTER_S  # past the retry: the storage is tried (and times out) again
        started = time.monotonic()
        await limit.check("addr:a")
        assert 0.04 < time.monotonic() - started < 0.2
    finally:
        sock.close()
        await limit.close()


def test_the_memory_sweep_runs_once_per_interval_on_the_callers_thread() -> None:
    """The library would start a thread to scan every key 10 ms after each hit once the
    last one ended; here the scan runs inline, once per SWEEP_S, and drops expired counters."""
    clock = Clock()
    storage = SweptMemoryStorage(clock)
    strategy = FixedWindowRateLimiter(storage)
    item = RateLimitItemPerMinute(1000)
    threads = threading.active_count()
    for i in range(50):
        assert strategy.hit(item, f"addr:{i}")
    assert storage.sweeps == 1
    assert threading.active_count() <= threads
    expired = item.key_for("addr:0")
    storage.expirations[expired] = time.time() - 1  # as if its window had passed
    assert strategy.hit(item, "addr:1")
    assert expired in storage.storage  # swept at the next interval, not on every hit
    clock.now += SWEEP_S
    assert strategy.hit(item, "addr:1")
    assert storage.sweeps == 2
    assert expired not in storage.storage
