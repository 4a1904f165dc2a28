"""A version's window of outcomes: what counts, error rate, p99 from the histogram."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inferd.core.traffic.window import GROWTH, Window


def test_successes_and_counted_errors_are_requests() -> None:
    window = Window()
    for status in ("ok", "ok", "internal", "deadline_exceeded", "unavailable"):
        window.add(status, 0.001)
    assert (window.requests, window.errors) == (5, 3)
    assert window.error_rate() == pytest.approx(0.6)


@pytest.mark.parametrize(
    "status",
    ["invalid_argument", "not_found", "payload_too_large", "resource_exhausted", "cancelled"],
)
def test_client_mistakes_load_shedding_and_cancellations_do_not_count(status: str) -> None:
    window = Window()
    window.add(status, 0.0)
    assert (window.requests, window.errors, window.error_rate()) == (0, 0, 0.0)


def test_p99_is_within_one_bucket_above_the_true_value() -> None:
    latencies = np.random.default_rng(7).lognormal(mean=-7.0, sigma=1.0, size=5000)
    window = Window()
    for seconds in latencies:
        window.add("ok", float(seconds))
    truth = float(np.sort(latencies)[math.ceil(0.99 * len(latencies)) - 1])
    p99 = window.p99()
    assert p99 is not None
    assert truth <= p99 <= truth * GROWTH


def test_p99_ignores_errors_and_is_none_without_successes() -> None:
    window = Window()
    window.add("internal", 5.0)
    assert window.p99() is None
    window.add("ok", 0.002)
    p99 = window.p99()
    assert p99 is not None and 0.002 <= p99 <= 0.002 * GROWTH


def test_figures() -> None:
    window = Window()
    for _ in range(99):
        window.add("ok", 0.001)
    window.add("internal", 0.0)
    figures = window.figures()
    assert figures["requests"] == 100
    assert figures["errors"] == 1
    assert figures["error_rate"] == 0.01
    assert isinstance(figures["p99_ms"], float) and 1.0 <= figures["p99_ms"] <= 1.02
