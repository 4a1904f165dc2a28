"""Dynamic batching for one loaded model version.

Contract:
- ``submit`` resolves with exactly the rows it sent, in order, or raises. A batch closes
  when it holds ``max_batch_size`` rows or when its oldest request has waited
  ``max_queue_delay_s``; with a delay of 0 it takes whatever is queued when an instance is
  free. Requests whose non-batch shapes or dtypes differ are never put in one batch.
- The runtime runs in a worker thread, one per instance, so the event loop keeps decoding
  while a model computes. A runtime that changes the batch dimension is an error.
- A failure reaches every request of the batch that failed and no other.
- A full queue refuses at once (ResourceExhausted); a request whose deadline passed is
  answered DeadlineExceeded and never reaches the runtime.
- ``close`` finishes what is queued and running, then stops the scheduler task.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

from inferd.core.stats import VersionStats
from inferd.errors import (
    DeadlineExceeded,
    InferdError,
    InternalError,
    ResourceExhausted,
    Unavailable,
)

Arrays = dict[str, np.ndarray[Any, Any]]
RunFn = Callable[[Arrays], Arrays]
BatchKey = tuple[tuple[str, str, tuple[int, ...]], ...]


class BatchObserver(Protocol):
    def queued(self, delta: int) -> None: ...
    def waited(self, seconds: float) -> None: ...
    def executed(self, rows: int, seconds: float) -> None: ...


class _Unobserved:
    def queued(self, delta: int) -> None:
        pass

    def waited(self, seconds: float) -> None:
        pass

    def executed(self, rows: int, seconds: float) -> None:
        pass


@dataclasses.dataclass(slots=True)
class _Pending:
    inputs: Arrays
    rows: int
    key: BatchKey
    future: asyncio.Future[Arrays]
    enqueued: float
    deadline: float | None


def _expire(future: asyncio.Future[Arrays]) -> None:
    if not future.done():
        future.set_exception(DeadlineExceeded("the request's deadline passed before it finished"))


def _key(inputs: Arrays, batching: bool) -> BatchKey:
    return tuple(
        (name, array.dtype.str, array.shape[1:] if batching else array.shape)
        for name, array in inputs.items()
    )


class Batcher:
    def __init__(
        self,
        run: RunFn,
        *,
        stats: VersionStats,
        max_batch_size: int,
        max_queue_delay_s: float = 0.0,
        preferred_batch_sizes: Sequence[int] = (),
        max_queue_size: int = 256,
        instances: int = 1,
        observer: BatchObserver | None = None,
    ) -> None:
        if instances < 1:
            raise ValueError("instances must be >= 1")
        self._run_fn = run
        self._stats = stats
        self._observer: BatchObserver = observer or _Unobserved()
        self._batching = max_batch_size > 0
        self._max_rows = max(max_batch_size, 1)
        self._delay = max_queue_delay_s
        self._preferred = frozenset(preferred_batch_sizes)
        self._max_queue = max_queue_size
        self._queue: collections.deque[_Pending] = collections.deque()
        self._wakeup = asyncio.Event()
        self._free = asyncio.Semaphore(instances)
        self._executor = ThreadPoolExecutor(instances, thread_name_prefix=f"infer-{stats.name}")
        self._running: set[asyncio.Task[None]] = set()
        self._scheduler: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._scheduler is None:
            self._scheduler = asyncio.get_running_loop().create_task(self._schedule())

    async def submit(self, inputs: Arrays, deadline: float | None = None) -> Arrays:
        """Queue one request (``inputs`` share their batch dimension) and await its rows."""
        if self._closing:
            raise Unavailable(f"model '{self._stats.name}' is shutting down")
        if len(self._queue) >= self._max_queue:
            raise ResourceExhausted(
                f"model '{self._stats.name}' has {len(self._queue)} requests queued; retry later",
                retry_after_s=1.0,
            )
        rows = next(iter(inputs.values())).shape[0] if self._batching and inputs else 1
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            raise DeadlineExceeded("the request's deadline passed before it was queued")
        future: asyncio.Future[Arrays] = asyncio.get_running_loop().create_future()
        self._queue.append(
            _Pending(inputs, rows, _key(inputs, self._batching), future, now, deadline)
        )
        self._observer.queued(1)
        self._wakeup.set()
        if deadline is None:
            return await future
        # One timer per request (cheaper than a timeout scope): it fails the future at the
        # deadline; a batch that finishes later finds the future done and skips it.
        loop = asyncio.get_running_loop()
        timer = loop.call_at(loop.time() + (deadline - now), _expire, future)
        try:
            return await future
        finally:
            timer.cancel()

    async def _schedule(self) -> None:
        while True:
            await self._free.acquire()
            batch = await self._next_batch()
            if batch is None:
                self._free.release()
                return
            task = asyncio.get_running_loop().create_task(self._execute(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _next_batch(self) -> list[_Pending] | None:
        while True:
            while not self._queue:
                if self._closing:
                    return None
                self._wakeup.clear()
                await self._wakeup.wait()
            if self._batching and self._delay > 0:
                await self._fill(self._queue[0])
            batch = self._collect()
            if batch:
                return batch

    async def _fill(self, first: _Pending) -> None:
        """Wait until a full (or preferred) batch is queued or the oldest waited enough."""
        while not self._closing:
            available = sum(p.rows for p in self._queue if p.key == first.key)
            if available >= self._max_rows or available in self._preferred:
                return
            remaining = first.enqueued + self._delay - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()

    def _collect(self) -> list[_Pending]:
        """Take requests of the first live request's key, oldest first, up to the max rows."""
        now = time.monotonic()
        batch: list[_Pending] = []
        rows = 0
        keep: collections.deque[_Pending] = collections.deque()
        key: BatchKey | None = None
        for pending in self._queue:
            if pending.future.done():
                continue
            if pending.deadline is not None and now >= pending.deadline:
                pending.future.set_exception(
                    DeadlineExceeded("the request's deadline passed while it was queued")
                )
                continue
            if key is None:
                key = pending.key
            if pending.key == key and rows + pending.rows <= self._max_rows:
                batch.append(pending)
                rows += pending.rows
            else:
                keep.append(pending)
        self._observer.queued(len(keep) - len(self._queue))
        self._queue = keep
        if self._preferred and len(batch) > 1:
            batch = self._trim_to_preferred(batch)
        return batch

    def _trim_to_preferred(self, batch: list[_Pending]) -> list[_Pending]:
        total, best = 0, 0
        for i, pending in enumerate(batch, 1):
            total += pending.rows
            if total in self._preferred:
                best = i
        if best == 0 or best == len(batch):
            return batch
        for pending in reversed(batch[best:]):
            self._queue.appendleft(pending)
        self._observer.queued(len(batch) - best)
        return batch[:best]

    async def _execute(self, batch: list[_Pending]) -> None:
        try:
            start = time.monotonic()
            for pending in batch:
                self._stats.queue.add(start - pending.enqueued)
                self._observer.waited(start - pending.enqueued)
            loop = asyncio.get_running_loop()
            outputs, timings = await loop.run_in_executor(self._executor, self._compute, batch)
            rows = sum(p.rows for p in batch)
            self._stats.record_batch(rows, len(batch), *timings)
            self._observer.executed(rows, sum(timings))
            self._deliver(batch, outputs)
        except Exception as exc:
            error = (
                exc
                if isinstance(exc, InferdError)
                else InternalError(
                    f"model '{self._stats.name}' failed: {type(exc).__name__}: {exc}"
                )
            )
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(error)
        finally:
            self._free.release()

    def _compute(self, batch: list[_Pending]) -> tuple[Arrays, tuple[float, float, float]]:
        t0 = time.perf_counter()
        if len(batch) == 1:
            inputs = batch[0].inputs
        else:
            inputs = {
                name: np.concatenate([p.inputs[name] for p in batch]) for name in batch[0].inputs
            }
        t1 = time.perf_counter()
        outputs = self._run_fn(inputs)
        t2 = time.perf_counter()
        if self._batching:
            rows = sum(p.rows for p in batch)
            for name, array in outputs.items():
                if array.ndim == 0 or array.shape[0] != rows:
                    raise InternalError(
                        f"model '{self._stats.name}' returned {array.shape[0] if array.ndim else 0}"
                        f" rows of output '{name}' for a batch of {rows}"
                    )
        return outputs, (t1 - t0, t2 - t1, time.perf_counter() - t2)

    def _deliver(self, batch: list[_Pending], outputs: Arrays) -> None:
        if len(batch) == 1:
            if not batch[0].future.done():
                batch[0].future.set_result(outputs)
            return
        offset = 0
        for pending in batch:
            end = offset + pending.rows
            if not pending.future.done():
                pending.future.set_result({n: a[offset:end] for n, a in outputs.items()})
            offset = end

    async def close(self) -> None:
        """Finish queued and running work, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._scheduler is not None:
            await self._scheduler
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        self._executor.shutdown(wait=False)
