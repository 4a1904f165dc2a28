"""Per-client token buckets (in-process)."""

from __future__ import annotations

import time
from collections import OrderedDict

from inferd.errors import ResourceExhausted
from inferd.settings import RateLimitSettings


def rate_limiter(settings: RateLimitSettings) -> RateLimiter | None:
    """The process's limiter when rate limiting is on. One limiter serves every transport,
    so a client has one budget whether it calls over REST, WebSocket or gRPC."""
    return RateLimiter(settings) if settings.enabled else None


class RateLimiter:
    """Each client key refills at ``requests_per_minute`` up to ``burst`` tokens.

    Keys are kept in LRU order and capped, so a flood of addresses cannot grow memory.
    """

    def __init__(self, settings: RateLimitSettings, max_clients: int = 100_000) -> None:
        self.rate = settings.requests_per_minute / 60.0
        self.burst = float(settings.burst or max(1, round(self.rate)))
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._max_clients = max_clients

    def check(self, key: str, now: float | None = None) -> None:
        """Take one token for ``key`` or raise ResourceExhausted with a retry delay."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
            raise ResourceExhausted(
                f"rate limit of {self.rate * 60:g} requests per minute exceeded",
                retry_after_s=wait,
            )
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)
