"""Forming a batch: when the queue holds one that is due, and which requests it takes.

Part of :class:`inferd.core.serving.batcher.Batcher` (its contract is written there); this
mixin reads the batcher's queue and limits, and calls back its ``_leave`` and
``_dispatch``.
"""

from __future__ import annotations

import asyncio
import collections
import time

from inferd.core.serving.batch import BatchKey, Pending
from inferd.errors import DeadlineExceeded


class BatchForming:
    """Batch forming, on the event loop."""

    _queue: collections.deque[Pending]
    _max_rows: int
    _preferred: frozenset[int]
    _delay: float
    _loop: asyncio.AbstractEventLoop | None
    _timer: asyncio.TimerHandle | None

    def _leave(self, pending: Pending) -> None:
        raise NotImplementedError  # the batcher's

    def _dispatch(self) -> None:
        raise NotImplementedError  # the batcher's

    def _ready(self) -> bool:
        """A full (or preferred) batch is queued or the oldest waited enough; if neither,
        a timer calls ``_dispatch`` when the oldest has waited the queue delay."""
        first = self._queue[0]
        available = sum(p.rows for p in self._queue if p.key == first.key)
        if available >= self._max_rows or available in self._preferred:
            return True
        due = first.enqueued + self._delay
        if time.monotonic() >= due:
            return True
        if self._timer is None and self._loop is not None:
            self._timer = self._loop.call_at(
                self._loop.time() + (due - time.monotonic()), self._on_timer
            )
        return False

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _collect(self) -> list[Pending]:
        """Take requests of the first live request's key, oldest first, up to the max rows."""
        now = time.monotonic()
        batch: list[Pending] = []
        rows = 0
        keep: collections.deque[Pending] = collections.deque()
        key: BatchKey | None = None
        for pending in self._queue:
            if pending.future.done():
                self._leave(pending)
                continue
            if pending.deadline is not None and now >= pending.deadline:
                pending.future.set_exception(
                    DeadlineExceeded("the request's deadline passed while it was queued")
                )
                self._leave(pending)
                continue
            if key is None:
                key = pending.key
            # A batch takes its first request whatever its rows (a latency target's limit
            # may be below one request's rows).
            if pending.key == key and (not batch or rows + pending.rows <= self._max_rows):
                batch.append(pending)
                rows += pending.rows
            else:
                keep.append(pending)
        self._queue = keep
        if self._preferred and len(batch) > 1:
            batch = self._trim_to_preferred(batch)
        return batch

    def _trim_to_preferred(self, batch: list[Pending]) -> list[Pending]:
        total, best = 0, 0
        for i, pending in enumerate(batch, 1):
            total += pending.rows
            if total in self._preferred:
                best = i
        if best == 0 or best == len(batch):
            return batch
        for pending in reversed(batch[best:]):
            self._queue.appendleft(pending)
        return batch[:best]
