"""What one model version answered over a window of time: requests, errors, p99 latency.

A guarded rollout (core/rollout.py) keeps one :class:`Window` per version it watches and
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

    def quantile(self, q: float) -> float | None:
        """The latency (seconds) ``q`` of the successes stay at or below, as the upper bound
        of its bucket; None without successes."""
        successes = self.requests - self.errors
        if successes <= 0:
            return None
        rank = math.ceil(q * successes)
        seen = 0
        for index, count in enumerate(self.latencies):
            seen += count
            if seen >= rank:
                return BOUNDS[index] if index < len(BOUNDS) else math.inf
        return math.inf  # unreachable: the buckets hold every success

    def p99(self) -> float | None:
        return self.quantile(0.99)

    def figures(self) -> dict[str, float | int | None]:
        """The window as ``GET .../rollout`` shows it."""
        p99 = self.p99()
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.error_rate(), 6),
            "p99_ms": None if p99 is None else round(p99 * 1000, 4),
        }
