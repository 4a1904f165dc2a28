"""The retry policy in-process: Retry-After honoured, back-off doubled, bounded by attempts,
by the longest wait and by the call's deadline."""

from __future__ import annotations

import time

import pytest

from inferd.client import NO_RETRY, Retry
from inferd.client.retry import deadline_of


def test_retry_after_is_waited_as_given() -> None:
    assert Retry().wait(1, 2.0, None) == 2.0
    assert Retry().wait(3, 0.5, None) == 0.5


def test_without_retry_after_the_back_off_doubles() -> None:
    policy = Retry(attempts=4, backoff_s=0.1)
    assert [policy.wait(n, None, None) for n in (1, 2, 3, 4)] == pytest.approx([0.1, 0.2, 0.4, 0.8])


def test_bounded_by_attempts_the_longest_wait_and_the_deadline() -> None:
    assert Retry(attempts=2).wait(3, 1.0, None) is None
    assert NO_RETRY.wait(1, 1.0, None) is None
    assert Retry(max_wait_s=5).wait(1, 6.0, None) is None
    assert Retry().wait(1, 1.0, time.monotonic() + 0.5) is None  # it would end past the deadline
    assert Retry().wait(1, 1.0, time.monotonic() + 5) == 1.0


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        Retry(attempts=-1)
    with pytest.raises(ValueError, match="timeout must be positive"):
        deadline_of(0)
