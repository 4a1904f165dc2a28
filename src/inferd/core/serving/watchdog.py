"""The batch watchdog: times every batch an instance runs and says when one overran.

A batch that runs longer than its limit makes the watchdog report a ``fault`` until that
batch returns (a model thread cannot be stopped from outside, only waited for or
abandoned). The batcher decides what a fault means for its requests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

log = logging.getLogger("inferd.batcher")

Batch = TypeVar("Batch")


class Watchdog(Generic[Batch]):
    """Batches running now, each with a timer of ``limit_s`` (None: never overrun)."""

    def __init__(self, name: str, limit_s: float | None, on_overrun: Callable[[str], None]) -> None:
        self._name = name
        self._limit = limit_s
        self._on_overrun = on_overrun
        self._running: dict[int, tuple[Batch, asyncio.TimerHandle | None]] = {}
        self._overran: set[int] = set()
        self.fault: str | None = None

    def started(self, batch: Batch, loop: asyncio.AbstractEventLoop) -> None:
        timer = None if self._limit is None else loop.call_later(self._limit, self._late, batch)
        self._running[id(batch)] = (batch, timer)

    def finished(self, batch: Batch) -> None:
        _, timer = self._running.pop(id(batch), (batch, None))
        if timer is not None:
            timer.cancel()
        if id(batch) in self._overran:
            self._overran.discard(id(batch))
            if not self._overran:
                self.fault = None
                log.warning("model '%s': the overrunning batch returned; serving again", self._name)

    def running(self) -> Iterator[Batch]:
        return (batch for batch, _ in self._running.values())

    def _late(self, batch: Batch) -> None:
        self._overran.add(id(batch))
        self.fault = f"a batch has been running for over {self._limit:g} s (max_batch_time_s)"
        log.error("model '%s' is unhealthy: %s", self._name, self.fault)
        self._on_overrun(self.fault)
