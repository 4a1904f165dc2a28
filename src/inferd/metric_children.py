"""Bound children of prometheus_client's metrics, moved with less work per call than its
own ``inc`` and ``observe`` (the request path moves several per request); what they write
is exactly what those calls write (``tests/test_metrics.py``)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.values import MutexValue


class BoundCount:
    """A bound counter or gauge child, moved without prometheus_client's per-call checks
    (the checks guard against unbound parents; a bound child always passes them) and,
    in one process, without its lock: every request metric is moved on the event loop's
    thread (the lock guards against writers in other threads; readers read a float).
    A value shared between worker processes (``--workers``) is moved by its own ``inc``."""

    __slots__ = ("_value", "add")

    def __init__(self, child: Counter | Gauge) -> None:
        self._value: Any = child._value
        self.add: Callable[..., None] = self._bump if type(self._value) is MutexValue else self._inc

    def _bump(self, amount: float = 1.0) -> None:
        self._value._value += amount

    def _inc(self, amount: float = 1.0) -> None:
        self._value.inc(amount)


class BoundHistogram:
    """A bound histogram child: the bucket found by bisection instead of a Python loop.
    prometheus_client keeps one non-cumulative value per bucket (``le`` the first bound
    not below the value) and the sum; this writes exactly those, so every exporter,
    multiprocess mode included, reads what ``Histogram.observe`` would have written
    (in one process without the values' locks, as :class:`BoundCount`).
    ``tests/test_metrics.py`` holds the two side by side."""

    __slots__ = ("_bounds", "_buckets", "_sum", "observe")

    def __init__(self, child: Histogram) -> None:
        self._bounds: list[float] = list(child._upper_bounds)
        self._buckets: list[Any] = child._buckets
        self._sum: Any = child._sum
        self.observe: Callable[[float], None] = (
            self._bump if type(self._sum) is MutexValue else self._inc
        )

    def _bump(self, value: float) -> None:
        self._sum._value += value
        self._buckets[bisect_left(self._bounds, value)]._value += 1

    def _inc(self, value: float) -> None:
        self._sum.inc(value)
        self._buckets[bisect_left(self._bounds, value)].inc(1)
