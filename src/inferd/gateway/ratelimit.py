"""Rate limits per principal (and optionally per model), kept by the ``limits`` library.

One :class:`RateLimiter` per process serves every transport, so a principal has one budget
whether it calls over REST, WebSocket or gRPC. Its counters live in the storage named by
``safeguards.rate_limit.storage_uri`` (else ``storage.redis_uri``, else this process's
memory): with Redis, every worker and replica shares them.

Contract of :meth:`RateLimiter.check`:
- it takes one hit from the principal's budget or raises :class:`~inferd.errors.RateLimited`
  (the limit, what remains, when the window resets);
- it never waits for the storage longer than ``storage.timeout_ms``. A storage that fails
  (down, slow, refusing) decides nothing: the check answers per ``failure_mode`` (``open``
  admits, ``closed`` refuses with :class:`~inferd.errors.Unavailable`), and for the next
  :data:`RETRY_S` seconds every check answers so at once, without trying the storage. Each
  such answer is counted in ``inferd_rate_limit_storage_failures_total``; the failure is
  logged once per :data:`LOG_INTERVAL_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Final

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio import strategies
from limits.aio.storage import MemoryStorage, RedisStorage, Storage

from inferd.errors import ConfigError, RateLimited, Unavailable
from inferd.metrics import Metrics
from inferd.settings import RateLimitSettings, StorageSettings

log = logging.getLogger("inferd.gateway")

#: After a storage failure, how long checks answer per the failure mode without trying it.
RETRY_S: Final = 1.0
#: At most one log line per this many seconds about a failing storage.
LOG_INTERVAL_S: Final = 60.0
#: Most often the in-memory counters are swept for expired ones.
SWEEP_S: Final = 1.0
#: Prefix of every key the limiter writes (several servers may share one Redis).
KEY_PREFIX: Final = "inferd-ratelimit"

#: ``strategy`` setting -> the ``limits`` strategy that keeps the window.
STRATEGIES: Final[dict[str, type[strategies.RateLimiter]]] = {
    "fixed-window": strategies.FixedWindowRateLimiter,
    "sliding-window": strategies.SlidingWindowCounterRateLimiter,
    "moving-window": strategies.MovingWindowRateLimiter,
}


class SweptMemoryStorage(MemoryStorage):
    """``limits``' in-process storage, its expiry sweep held to one per :data:`SWEEP_S`.

    The library's sweep scans every key and is started again after every hit once the last
    one is done, so each request would pay for a scan of every principal seen in the last
    minute (a client rotating addresses would make that grow). Expired counters are still
    dropped, up to a sweep interval late.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._next_sweep = -math.inf

    # Overrides the library's private hook (its name mangled): every hit calls it.
    async def _MemoryStorage__schedule_expiry(self) -> None:
        now = self._clock()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_S
            await super()._MemoryStorage__schedule_expiry()  # type: ignore[misc]


def _memory(uri: str, timeout_s: float) -> Storage:
    return SweptMemoryStorage()


def _redis(uri: str, timeout_s: float) -> Storage:
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return RedisStorage(
        "async+" + uri.replace("unix://", "redis+unix://", 1),
        implementation="redispy",
        key_prefix=KEY_PREFIX,
        wrap_exceptions=True,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),  # type: ignore[arg-type]  # redis-py option, passed through
    )


#: URI scheme -> the storage it names, and whether it is across a network (a check on it
#: runs under the storage deadline; one in memory cannot wait, so it skips that cost).
STORAGES: Final[dict[str, tuple[Callable[[str, float], Storage], bool]]] = {
    "memory": (_memory, False),
    "redis": (_redis, True),
    "rediss": (_redis, True),
    "unix": (_redis, True),
}


def storage_uri(settings: RateLimitSettings, storage: StorageSettings) -> str:
    """Where the counters live: the rate limit's own URI, else the shared Redis, else memory."""
    return settings.storage_uri or storage.redis_uri or "memory://"


def rate_limiter(
    settings: RateLimitSettings, storage: StorageSettings, metrics: Metrics | None = None
) -> RateLimiter | None:
    """The process's limiter when rate limiting is on."""
    return RateLimiter(settings, storage, metrics) if settings.enabled else None


class RateLimiter:
    """``requests_per_minute`` hits per principal (per model too with ``per_model``)."""

    def __init__(
        self,
        settings: RateLimitSettings,
        storage: StorageSettings,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        uri = storage_uri(settings, storage)
        scheme = uri.split("://", 1)[0] if "://" in uri else ""
        if scheme not in STORAGES:
            raise ConfigError(
                f"safeguards.rate_limit.storage_uri: unknown scheme {scheme!r}; "
                f"expected one of {sorted(STORAGES)}"
            )
        self.uri = uri
        self.item: RateLimitItem = RateLimitItemPerMinute(settings.requests_per_minute)
        self.per_model = settings.per_model
        self.fail_open = settings.failure_mode == "open"
        self.timeout_s = storage.timeout_ms / 1000
        factory, remote = STORAGES[scheme]
        self._storage = factory(uri, self.timeout_s)
        self._deadline: Callable[[], AbstractAsyncContextManager[Any]] = (
            functools.partial(asyncio.timeout, self.timeout_s) if remote else contextlib.nullcontext
        )
        self._strategy = STRATEGIES[settings.strategy](self._storage)
        self._failures = None if metrics is None else metrics.rate_limit_storage_failures
        self._clock = clock
        self._down_until = -math.inf
        self._logged_at = -math.inf

    async def check(self, principal: str, model: str | None = None) -> None:
        """Take one hit for ``principal`` (and ``model``, when limits are per model)."""
        keys = (principal, model or "") if self.per_model else (principal,)
        if self._clock() < self._down_until:
            self._storage_failed(None)
            return
        try:
            async with self._deadline():
                if await self._strategy.hit(self.item, *keys):
                    return
                stats = await self._strategy.get_window_stats(self.item, *keys)
        except Exception as exc:  # the storage's own errors: redis, sockets, timeouts
            self._down_until = self._clock() + RETRY_S
            self._storage_failed(exc)
            return
        reset_s = max(0.0, stats.reset_time - time.time())
        raise RateLimited(
            f"rate limit of {self.item.amount} requests per minute exceeded",
            limit=self.item.amount,
            remaining=stats.remaining,
            reset_s=reset_s,
        )

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
                _redacted(self.uri),
                type(exc).__name__,
                exc,
                outcome,
                "open" if self.fail_open else "closed",
            )
        if not self.fail_open:
            raise Unavailable(
                "rate limit storage unreachable; request refused", retry_after_s=RETRY_S
            )

    async def close(self) -> None:
        """Release the storage's connections."""
        bridge: Any = getattr(self._storage, "bridge", None)
        client: Any = getattr(bridge, "storage", None)
        if client is not None:
            await client.aclose()


def _redacted(uri: str) -> str:
    """A storage URI without its password."""
    scheme, sep, rest = uri.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    return scheme + sep + rest
