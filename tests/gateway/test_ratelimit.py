"""Per-client token buckets."""

from __future__ import annotations

import pytest

from inferd.errors import ResourceExhausted
from inferd.gateway.ratelimit import RateLimiter, rate_limiter
from inferd.settings import RateLimitSettings


def limiter(per_minute: int = 60, burst: int | None = 3, max_clients: int = 100) -> RateLimiter:
    settings = RateLimitSettings(enabled=True, requests_per_minute=per_minute, burst=burst)
    return RateLimiter(settings, max_clients=max_clients)


def test_a_burst_then_refusal_with_the_wait() -> None:
    bucket = limiter(per_minute=60, burst=3)
    for _ in range(3):
        bucket.check("a", now=100.0)
    with pytest.raises(ResourceExhausted, match="60 requests per minute") as refused:
        bucket.check("a", now=100.0)
    assert refused.value.retry_after_s == pytest.approx(1.0)


def test_tokens_come_back_at_the_sustained_rate() -> None:
    bucket = limiter(per_minute=120, burst=1)  # one token every half second
    bucket.check("a", now=0.0)
    with pytest.raises(ResourceExhausted):
        bucket.check("a", now=0.25)
    bucket.check("a", now=0.5)
    with pytest.raises(ResourceExhausted) as refused:
        bucket.check("a", now=0.6)
    assert refused.value.retry_after_s == pytest.approx(0.4)


def test_a_refused_request_takes_no_token() -> None:
    bucket = limiter(per_minute=60, burst=1)
    bucket.check("a", now=0.0)
    for moment in (0.2, 0.4, 0.6):
        with pytest.raises(ResourceExhausted):
            bucket.check("a", now=moment)
    bucket.check("a", now=1.0)


def test_clients_have_separate_budgets() -> None:
    bucket = limiter(burst=1)
    bucket.check("10.0.0.1", now=0.0)
    bucket.check("10.0.0.2", now=0.0)
    with pytest.raises(ResourceExhausted):
        bucket.check("10.0.0.1", now=0.0)


def test_the_number_of_clients_remembered_is_capped() -> None:
    bucket = limiter(burst=1, max_clients=2)
    for client in ("a", "b", "c"):  # "a" is the least recently seen: forgotten
        bucket.check(client, now=0.0)
    bucket.check("a", now=0.0)  # a full bucket again
    with pytest.raises(ResourceExhausted):
        bucket.check("c", now=0.0)


def test_the_default_burst_is_a_second_of_the_rate() -> None:
    bucket = limiter(per_minute=600, burst=None)  # 10 a second
    for _ in range(10):
        bucket.check("a", now=0.0)
    with pytest.raises(ResourceExhausted):
        bucket.check("a", now=0.0)


def test_no_limiter_when_disabled() -> None:
    assert rate_limiter(RateLimitSettings(enabled=False)) is None
    assert isinstance(rate_limiter(RateLimitSettings(enabled=True)), RateLimiter)
