"""How late the event loop runs what is ready: the wait a request spends before the HTTP
front runs it, which no request can time itself (inferd.core.serving.tail plans with it).

A request's bytes wait in the kernel's socket buffer until the loop polls its socket, then
in the loop's queue of ready callbacks until its turn; when the loop (or the CPU under
it) is saturated, both grow, and the front's arrival timestamp is taken only after them.
A timer waits the same way: one callback every :data:`PERIOD_S`, timed against when it
was due, samples that wait. Its running mean and mean deviation (each sample weighs
:data:`WEIGHT`) are the estimate.

The probe runs only while something holds it (a model with a latency target): a server
without targets schedules nothing. One probe per event loop, shared by its holders.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Final

#: How often the loop is sampled.
PERIOD_S: Final = 0.005
#: How much one sample moves the running mean (and mean deviation).
WEIGHT: Final = 0.05

_probes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopLag] = weakref.WeakKeyDictionary()


class LoopLag:
    """The lag of one event loop, sampled while held (see the module's rule)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, period_s: float = PERIOD_S) -> None:
        self._loop = weakref.ref(loop)  # the probes' table is keyed by the loop
        self._period = period_s
        self._holders = 0
        self._timer: asyncio.TimerHandle | None = None
        #: Running mean and mean deviation of the lag, in seconds.
        self.mean = 0.0
        self.deviation = 0.0
        self.samples = 0

    def hold(self) -> None:
        """One more holder; the first starts the sampling."""
        self._holders += 1
        if self._timer is None:
            self._schedule()

    def release(self) -> None:
        """One holder less; the last stops the sampling."""
        self._holders = max(self._holders - 1, 0)
        if not self._holders and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @property
    def running(self) -> bool:
        return self._timer is not None

    def sample(self, lag_s: float) -> None:
        """One measured lag (what the timer does; public so the rule can be fed)."""
        lag_s = max(lag_s, 0.0)
        self.samples += 1
        self.mean += WEIGHT * (lag_s - self.mean)
        self.deviation += WEIGHT * (abs(lag_s - self.mean) - self.deviation)

    def _schedule(self) -> None:
        loop = self._loop()
        if loop is None:
            return
        due = loop.time() + self._period
        self._timer = loop.call_at(due, self._tick, loop, due)

    def _tick(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        self.sample(loop.time() - due)
        self._schedule()


def probe(loop: asyncio.AbstractEventLoop) -> LoopLag:
    """The probe of ``loop`` (made on first use; not started until held)."""
    found = _probes.get(loop)
    if found is None:
        found = _probes[loop] = LoopLag(loop)
    return found
