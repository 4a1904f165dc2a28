"""What one model version answered over a window of time: requests, errors, p99 latency.

A guarded rollout (core/traffic/rollout.py) keeps one :class:`Window` per version it watches and
compares them. Recording is the hot path of every request of a model under rollout: a
counter and, for a success, one bucket of a latency histogram found by bisection. The
histogram's buckets grow by :data:`GROWTH` per bucket from :data:`FASTEST_S`, so a p99 read
from it is the upper bound of its bucket: at most 2 % above the true value.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import Final

#: Outcomes (the service's statuses: "ok" or a core error code's value) that count as a
#: failure of the version: the model failed or an internal error (``internal``), no answer
#: in time (``deadline_exceeded``), the version could not serve (``unavailable``). A
#: client's mistake (``invalid_argument``, ``not_found``, ``payload_too_large``), load
#: shedding (``resource_exhausted``) and a client that went away (``cancelled``) say
#: nothing about the version and are not counted at all.
COUNTED_ERRORS: Final = frozenset({"internal", "deadline_exceeded", "unavailable"})

#: The z-score of the p99 guard's confidence bounds (two-sided 95 %).
P99_Z: Final = 1.96
FASTEST_S: Final = 1e-6
SLOWEST_S: Final = 1e3
GROWTH: Final = 1.02
#: Upper bounds of the latency buckets; a latency past the last one lands in an extra bucket.
BOUNDS: Final = tuple(
    FASTEST_S * GROWTH**i for i in range(math.ceil(math.log(SLOWEST_S / FASTEST_S, GROWTH)) + 1)
)


class Window:
    """Outcomes of one version since the window opened."""

    __slots__ = ("errors", "latencies", "requests")

    def __init__(self) -> None:
        #: Answered requests that count: successes and :data:`COUNTED_ERRORS`.
        self.requests = 0
        self.errors = 0
        #: Successes per latency bucket (:data:`BOUNDS`, then one for slower ones).
        self.latencies = [0] * (len(BOUNDS) + 1)

    def add(self, status: str, seconds: float) -> None:
        """One answered request: ``status`` "ok" with its latency, or an error code."""
        if status == "ok":
            self.requests += 1
            self.latencies[bisect_left(BOUNDS, seconds)] += 1
        elif status in COUNTED_ERRORS:
            self.requests += 1
            self.errors += 1

    def error_rate(self) -> float:
        """Errors per counted request; 0 without requests."""
        return self.errors / self.requests if self.requests else 0.0

    @property
    def successes(self) -> int:
        return self.requests - self.errors

    def quantile(self, q: float) -> float | None:
        """The latency (seconds) ``q`` of the successes stay at or below, as the upper bound
        of its bucket; None without successes."""
        return self.ranked(math.ceil(q * self.successes))

    def ranked(self, rank: int) -> float | None:
        """The ``rank``-th fastest success's latency (1: the fastest; clamped to the
        successes there are), as the upper bound of its bucket; None without successes."""
        successes = self.successes
        if successes <= 0:
            return None
        rank = min(max(rank, 1), successes)
        seen = 0
        for index, count in enumerate(self.latencies):
            seen += count
            if seen >= rank:
                return BOUNDS[index] if index < len(BOUNDS) else math.inf
        return math.inf  # unreachable: the buckets hold every success

    def p99(self) -> float | None:
        return self.quantile(0.99)

    def p99_bounds(self) -> tuple[float, float] | None:
        """A 95 % confidence interval of the true p99 from these successes alone, whatever
        the distribution: the latencies at ranks ``n·0.99 ∓ 1.96·sqrt(n·0.99·0.01)``
        (the normal approximation of the binomial count of successes below the p99). The
        upper end is the slowest success when the window is too small to bound it (under
        about 300 successes); None without successes."""
        n = self.successes
        if n <= 0:
            return None
        centre, spread = 0.99 * n, P99_Z * math.sqrt(n * 0.99 * 0.01)
        low, high = (
            self.ranked(math.floor(centre - spread)),
            self.ranked(math.ceil(centre + spread)),
        )
        assert low is not None and high is not None
        return low, high

    def figures(self) -> dict[str, float | int | None]:
        """The window as ``GET .../rollout`` shows it."""
        p99 = self.p99()
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.error_rate(), 6),
            "p99_ms": None if p99 is None else round(p99 * 1000, 4),
        }
