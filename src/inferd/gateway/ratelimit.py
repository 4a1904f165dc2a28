"""Rate limits per principal (and optionally per model), kept by the ``limits`` library.

One limiter per process serves every transport, so a principal has one budget whether it
calls over REST, WebSocket or gRPC. Its counters live in the storage named by
``safeguards.rate_limit.storage_uri`` (else ``storage.redis_uri``, else this process's
memory): with Redis, every worker and replica shares them. :data:`STORAGES` picks the
limiter for the URI's scheme:

- :class:`LocalRateLimiter` (``memory://``): ``limits``' synchronous in-process storage,
  hit as the library's strategy of the same name hits it (:data:`TAKES`), with each
  principal's storage key built once. A check is a few dictionary operations on the event
  loop, taken by :meth:`RateLimiter.take` without a coroutine: no timeout scope (it cannot
  wait), and no failure mode (it cannot fail).
- :class:`SharedRateLimiter` (``redis://``, ``rediss://``, ``unix://``): ``limits``'
  asynchronous strategies over the Redis the storage layer hands out
  (:class:`inferd.core.storage.RedisCounters`), each check under the storage deadline.

Contract of :meth:`RateLimiter.check`:
- it takes one hit from the principal's budget or raises :class:`~inferd.errors.RateLimited`
  (the limit, what remains, when the window resets);
- it never waits for the storage longer than ``storage.timeout_ms``. A storage that fails
  (down, slow, refusing) decides nothing: the check answers per ``failure_mode`` (``open``
  admits, ``closed`` refuses with :class:`~inferd.errors.Unavailable`), and for the next
  :data:`~inferd.core.storage.RETRY_AFTER_S` seconds (the storage layer's breaker) every
  check answers so at once, without trying the storage. Each
  such answer is counted in ``inferd_rate_limit_storage_failures_total``; the failure is
  logged once per :data:`LOG_INTERVAL_S`.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Final

from limits import RateLimitItem, RateLimitItemPerMinute, WindowStats, strategies
from limits.aio import strategies as aio_strategies
from limits.storage import MemoryStorage

from inferd.core.storage import BACKENDS, RedisCounters, redacted
from inferd.errors import ConfigError, RateLimited, Unavailable
from inferd.metrics import Metrics
from inferd.settings import RateLimitSettings, StorageSettings

log = logging.getLogger("inferd.gateway")

#: At most one log line per this many seconds about a failing storage.
LOG_INTERVAL_S: Final = 60.0
#: Most often the in-memory counters are swept for expired ones.
SWEEP_S: Final = 1.0
#: Prefix of every key the limiter writes (several servers may share one Redis).
KEY_PREFIX: Final = "inferd-ratelimit"
#: Storage keys kept ready-built, for this many (principal, model) pairs.
KEY_CACHE: Final = 4096


def _within(incr: Callable[[str, int], int], expiry: int, limit: int, key: str) -> bool:
    """One more hit in a fixed window, if it stays within ``limit``."""
    return incr(key, expiry) <= limit


#: ``strategy`` setting -> the ``limits`` strategy that keeps the window, in process (it
#: reads the window's state for a refusal).
STRATEGIES: Final[dict[str, type[strategies.RateLimiter]]] = {
    "fixed-window": strategies.FixedWindowRateLimiter,
    "sliding-window": strategies.SlidingWindowCounterRateLimiter,
    "moving-window": strategies.MovingWindowRateLimiter,
}
#: ``strategy`` setting -> how a hit is taken from the in-process storage for a key: the
#: storage call that strategy's ``hit`` makes, its limit and window bound once.
TAKES: Final[dict[str, Callable[[MemoryStorage, RateLimitItem], Callable[[str], bool]]]] = {
    "fixed-window": lambda storage, item: functools.partial(
        _within, storage.incr, item.get_expiry(), item.amount
    ),
    "sliding-window": lambda storage, item: functools.partial(
        storage.acquire_sliding_window_entry, limit=item.amount, expiry=item.get_expiry()
    ),
    "moving-window": lambda storage, item: functools.partial(
        storage.acquire_entry, limit=item.amount, expiry=item.get_expiry()
    ),
}
#: ``strategy`` setting -> the ``limits`` strategy over a shared (asynchronous) storage.
SHARED_STRATEGIES: Final[dict[str, type[aio_strategies.RateLimiter]]] = {
    "fixed-window": aio_strategies.FixedWindowRateLimiter,
    "sliding-window": aio_strategies.SlidingWindowCounterRateLimiter,
    "moving-window": aio_strategies.MovingWindowRateLimiter,
}


class SweptMemoryStorage(MemoryStorage):
    """``limits``' in-process storage, swept for expired counters on the caller's thread
    at most once per :data:`SWEEP_S`.

    The library sweeps from a new thread (a ``threading.Timer``) started 10 ms after a hit
    whenever the last one is done: under load, a hundred threads a second, each scanning
    every key while holding the interpreter. Expired counters are still dropped, up to a
    sweep interval late.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.timer.cancel()  # the library's first sweep, started by its constructor
        self._clock = clock
        self._next_sweep = -math.inf
        self.sweeps = 0

    # Overrides the library's private hook (its name mangled): every hit calls it.
    def _MemoryStorage__schedule_expiry(self) -> None:
        now = self._clock()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_S
            self.sweeps += 1
            self._MemoryStorage__expire_events()  # type: ignore[attr-defined]


# ``limits`` wraps these methods of every storage class, subclasses again: keep the
# parent's (wrapped once) rather than pay for a second wrapper on every call.
for _name in ("incr", "get", "get_expiry", "check", "reset", "clear"):
    setattr(SweptMemoryStorage, _name, vars(MemoryStorage)[_name])


def storage_uri(settings: RateLimitSettings, storage: StorageSettings) -> str:
    """Where the counters live: the rate limit's own URI, else the shared Redis, else memory."""
    return settings.storage_uri or storage.redis_uri or "memory://"


def rate_limiter(
    settings: RateLimitSettings,
    storage: StorageSettings,
    metrics: Metrics | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> RateLimiter | None:
    """The process's limiter when rate limiting is on."""
    return limiter_for(settings, storage, metrics, clock) if settings.enabled else None


def limiter_for(
    settings: RateLimitSettings,
    storage: StorageSettings,
    metrics: Metrics | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> RateLimiter:
    """The limiter that keeps ``settings``' counters in the storage they name."""
    uri = storage_uri(settings, storage)
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if scheme not in STORAGES:
        raise ConfigError(
            f"safeguards.rate_limit.storage_uri: unknown scheme {scheme!r}; "
            f"expected one of {sorted(STORAGES)}"
        )
    return STORAGES[scheme](settings, uri, storage.timeout_ms / 1000, metrics, clock)


class RateLimiter(abc.ABC):
    """``requests_per_minute`` hits per principal (per model too with ``per_model``)."""

    def __init__(self, settings: RateLimitSettings, uri: str) -> None:
        self.uri = uri
        self.item: RateLimitItem = RateLimitItemPerMinute(settings.requests_per_minute)
        self.per_model = settings.per_model

    @abc.abstractmethod
    async def check(self, principal: str, model: str | None = None) -> None:
        """Take one hit for ``principal`` (and ``model``, when limits are per model)."""

    def take(self, principal: str, model: str | None = None) -> Awaitable[None] | None:
        """:meth:`check`: the awaitable that takes the hit, or None when it was taken here
        (counters in this process: no coroutine per request)."""
        return self.check(principal, model)

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the storage's connections."""

    def refusal(self, stats: WindowStats) -> RateLimited:
        return RateLimited(
            f"rate limit of {self.item.amount} requests per minute exceeded",
            limit=self.item.amount,
            remaining=stats.remaining,
            reset_s=max(0.0, stats.reset_time - time.time()),
        )


class LocalRateLimiter(RateLimiter):
    """Counters in this process's memory (``memory://``)."""

    def __init__(
        self,
        settings: RateLimitSettings,
        uri: str,
        timeout_s: float,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(settings, uri)
        self.storage = SweptMemoryStorage(clock)
        self._strategy = STRATEGIES[settings.strategy](self.storage)
        self._take = TAKES[settings.strategy](self.storage, self.item)
        self._key = functools.lru_cache(maxsize=KEY_CACHE)(self.item.key_for)

    async def check(self, principal: str, model: str | None = None) -> None:
        self.take(principal, model)

    def take(self, principal: str, model: str | None = None) -> None:
        ids = (principal, model or "") if self.per_model else (principal,)
        if self._take(self._key(*ids)):
            return
        raise self.refusal(self._strategy.get_window_stats(self.item, *ids))

    async def close(self) -> None:
        """Nothing to release: the counters go with the process."""


class SharedRateLimiter(RateLimiter):
    """Counters in Redis, shared by every worker and replica that names it."""

    def __init__(
        self,
        settings: RateLimitSettings,
        uri: str,
        timeout_s: float,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(settings, uri)
        self.fail_open = settings.failure_mode == "open"
        self._counters = RedisCounters(uri, timeout_s, KEY_PREFIX, clock)
        self._strategy = SHARED_STRATEGIES[settings.strategy](self._counters.storage)
        self._failures = None if metrics is None else metrics.rate_limit_storage_failures
        self._clock = clock
        self._logged_at = -math.inf

    async def check(self, principal: str, model: str | None = None) -> None:
        keys = (principal, model or "") if self.per_model else (principal,)
        breaker = self._counters.breaker
        if breaker.open:
            self._storage_failed(None)
            return
        try:
            async with asyncio.timeout(self._counters.timeout_s):
                if await self._strategy.hit(self.item, *keys):
                    return
                stats = await self._strategy.get_window_stats(self.item, *keys)
        except Exception as exc:  # the storage's own errors: redis, sockets, timeouts
            breaker.trip()
            self._storage_failed(exc)
            return
        raise self.refusal(stats)

    def _storage_failed(self, exc: BaseException | None) -> None:
        """Answer per the failure mode; count it, and log now and then."""
        outcome = "admitted" if self.fail_open else "refused"
        if self._failures is not None:
            self._failures.labels(outcome).inc()
        now = self._clock()
        if exc is not None and now - self._logged_at >= LOG_INTERVAL_S:
            self._logged_at = now
            log.warning(
                "rate limit storage %s failed (%s: %s); requests are %s until it answers "
                "(safeguards.rate_limit.failure_mode: %s)",
                redacted(self.uri),
                type(exc).__name__,
                exc,
                outcome,
                "open" if self.fail_open else "closed",
            )
        if not self.fail_open:
            raise Unavailable(
                "rate limit storage unreachable; request refused",
                retry_after_s=self._counters.breaker.retry_after_s,
            )

    async def close(self) -> None:
        await self._counters.close()


#: URI scheme -> the limiter that keeps its counters there (every scheme of the storage
#: layer's shared stores keeps them in Redis).
STORAGES: Final[dict[str, type[LocalRateLimiter] | type[SharedRateLimiter]]] = {
    "memory": LocalRateLimiter,
    **dict.fromkeys(BACKENDS, SharedRateLimiter),
}
