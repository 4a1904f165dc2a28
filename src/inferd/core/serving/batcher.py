"""Dynamic batching for one loaded model version.

Contract:
- ``submit`` resolves with exactly the rows it sent, in order, or raises. A batch closes
  when it holds ``max_batch_size`` rows or when its oldest request has waited
  ``max_queue_delay_s``; with a delay of 0 it takes whatever is queued when an instance is
  free. Requests whose non-batch shapes or dtypes differ are never put in one batch.
- The runtime runs in a thread of its own, one per instance, so the event loop keeps
  decoding while a model computes; batches go to a free instance once per loop turn that
  queued requests (so requests decoded together share a batch) and from the callback of
  the batch before, with no scheduler task in between. A runtime that changes the batch
  dimension is an error.
- A failure reaches every request of the batch that failed and no other.
- A full queue refuses at once (ResourceExhausted); a request whose deadline passed is
  answered DeadlineExceeded and never reaches the runtime. A request that was answered
  (expired, cancelled) stops counting against the queue at once.
- A batch that runs longer than ``max_batch_time_s`` marks the batcher faulty (``fault``
  says why): that batch's requests and every queued one get Unavailable, and new ones are
  refused with Unavailable until the batch returns.
- Inline when idle and cheap (``inline_max_compute_s`` > 0, no queue delay, and a runtime
  whose calls are framework compute, not user code: never a Python model): batches
  are formed as always, and while no batch of the version runs in an instance thread they
  run on the event loop where they were formed, without the hop to an instance thread and
  back, when the version's running measurement of a model call (an average over its recent
  calls, at least ``INLINE_MIN_SAMPLES`` of them, seeded at load by timed warm-up calls) is
  under ``inline_max_compute_s`` (in an instance thread, a model that computes on the
  calling thread is measured by that thread's CPU time: its waits for the interpreter
  lock while the loop is busy are no cost of the model). One loop turn runs at most ``INLINE_SLICE_S`` of them;
  the rest follow in the next turn, after the loop has read its sockets. A slow model never
  measures under it, so it never runs inline; a model that becomes slow stops running
  inline as its average rises. Everything else goes through the queue.
- A lone request runs at once: when its transport says no other request is on its way to
  a queue (``alone``: the HTTP direct path, which reads them, knows), nothing of the
  version is queued and it may run inline now, ``submit`` calls the model itself instead of
  queueing the request, with no future and no loop turns to dispatch it and to wake its
  caller. Requests read in the same loop turn are never alone, so they still share a
  batch; other transports never say ``alone``.
- ``close`` finishes what is queued and running, then stops the instance threads. Given a
  grace, it waits no longer: what is left gets Unavailable and instance threads still
  running (a model that never returns) are abandoned, reported in the log; it returns
  False then. Instance threads are daemon threads, so an abandoned one never holds up
  the process's exit.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Final

from inferd.core.serving.batch import (
    Arrays,
    BatchObserver,
    Pending,
    RunFn,
    Timings,
    Unobserved,
    batch_key,
    expire,
)
from inferd.core.serving.execution import INLINE_MIN_SAMPLES, Execution
from inferd.core.serving.forming import BatchForming
from inferd.core.serving.stats import VersionStats
from inferd.core.serving.watchdog import Watchdog
from inferd.errors import (
    DeadlineExceeded,
    InferdError,
    ResourceExhausted,
    Unavailable,
)

#: What callers import from here (the batch vocabulary lives in inferd.core.serving.batch).
__all__ = [
    "INLINE_MIN_SAMPLES",
    "INLINE_SLICE_S",
    "Arrays",
    "BatchObserver",
    "Batcher",
    "Closed",
    "RunFn",
]

log = logging.getLogger("inferd.batcher")

#: Most time one loop turn spends running a version's batches inline before it lets the
#: loop go on (the rest follow in the next turn).
INLINE_SLICE_S: Final = 0.001


class Closed(Unavailable):
    """The batcher closed (its version unloads) before the request was queued: nothing ran."""


class Batcher(BatchForming, Execution):
    """One version's queue and instances (the contract: this module's docstring). Batches
    are formed by :class:`~inferd.core.serving.forming.BatchForming` and run by
    :class:`~inferd.core.serving.execution.Execution`."""

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
        prepare_thread: Callable[[], None] | None = None,
        observer: BatchObserver | None = None,
        max_batch_time_s: float | None = None,
        inline_max_compute_s: float = 0.0,
        cost_by_cpu: bool = False,
    ) -> None:
        if instances < 1:
            raise ValueError("instances must be >= 1")
        self._run_fn = run
        self._prepare_thread = prepare_thread
        self._stats = stats
        self._observer = observer or Unobserved()
        self._batching = max_batch_size > 0
        self._max_rows = self._most_rows = max(max_batch_size, 1)
        self._delay = max_queue_delay_s
        self._preferred = frozenset(preferred_batch_sizes)
        self._max_queue = max_queue_size
        self._queue = collections.deque()
        self._waiting = 0  # requests in the queue not yet answered
        self._watchdog: Watchdog[list[Pending]] = Watchdog(
            stats.name, max_batch_time_s, self._overran
        )
        self._instances = instances
        self._free = instances
        self._work = queue.SimpleQueue()  # batches for the instance threads; None: stop
        self._threads = [
            threading.Thread(
                target=self._serve_instance, name=f"infer-{stats.name}_{i}", daemon=True
            )
            for i in range(instances)
        ]
        self._loop = None
        self._timer = None
        self._expiry: asyncio.TimerHandle | None = None  # the one deadline timer
        self._expiry_due = math.inf  # when it fires
        self._dispatch_soon = False
        self._idle = asyncio.Event()
        self._closing = False
        #: Inline runs are possible at all (a model that waits to fill batches never runs
        #: inline); whether one happens depends on the measured cost of a call.
        self._inline = inline_max_compute_s > 0 and not (self._batching and self._delay > 0)
        self._inline_limit = inline_max_compute_s
        self._cost_by_cpu = cost_by_cpu
        self._call_cost = 0.0  # running average of a model call, in seconds
        self._calls = 0  # model calls measured (up to INLINE_MIN_SAMPLES)
        self._loop_prepared = False

    @property
    def queued(self) -> int:
        """Requests waiting for a batch."""
        return self._waiting

    @property
    def running(self) -> int:
        """Batches running now (one per busy instance)."""
        return self._instances - self._free

    def limit_rows(self, rows: int) -> None:
        """From now on wait for and take at most ``rows`` rows per batch (within
        ``max_batch_size``): a latency target's batch size (inferd.core.serving.latency)."""
        self._max_rows = max(1, min(rows, self._most_rows))

    @property
    def fault(self) -> str | None:
        """Why the batcher refuses work (a batch ran past ``max_batch_time_s``), or None."""
        return self._watchdog.fault

    def start(self) -> None:
        """Bind to the running loop and start the instance threads (once)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            for thread in self._threads:
                thread.start()

    async def submit(
        self,
        inputs: Arrays,
        deadline: float | None = None,
        arrived: float | None = None,
        alone: bool = False,
    ) -> Arrays:
        """Queue one request (``inputs`` share their batch dimension) and await its rows.
        ``arrived``: when the transport first saw it (read by a latency target only).
        ``alone``: the transport has no other request on its way to a queue (it runs at
        once when nothing is queued and the version may run inline now)."""
        if self._closing:
            raise Closed(f"model '{self._stats.name}' is shutting down")
        if self._watchdog.fault is not None:
            raise Unavailable(f"model '{self._stats.name}' is unhealthy: {self._watchdog.fault}")
        if self._waiting >= self._max_queue:
            raise ResourceExhausted(
                f"model '{self._stats.name}' has {self._waiting} requests queued; retry later",
                retry_after_s=1.0,
            )
        rows = next(iter(inputs.values())).shape[0] if self._batching and inputs else 1
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            raise DeadlineExceeded("the request's deadline passed before it was queued")
        if alone and not self._waiting and self._inline_ready():
            return self._run_alone(inputs, rows)
        # The loop it started on (asking asyncio for the running loop is a getpid system
        # call per request).
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[Arrays] = loop.create_future()
        if len(self._queue) > 2 * self._max_queue:
            # Answered requests stay in the deque while no instance is free: drop them.
            self._queue = collections.deque(p for p in self._queue if p.queued)
        pending = Pending(
            inputs, rows, batch_key(inputs, self._batching), future, now, deadline, arrived
        )
        self._queue.append(pending)
        self._waiting += 1
        if not self._dispatch_soon:
            # After the other requests decoded in this loop turn, so they share a batch.
            self._dispatch_soon = True
            loop.call_soon(self._dispatch)
        if deadline is not None and deadline < self._expiry_due:
            self._arm_expiry(loop, deadline, now)
        try:
            return await future
        finally:
            self._leave(pending)

    # -- deadlines: one timer per batcher, at the earliest deadline that may be waiting ------

    def _arm_expiry(self, loop: asyncio.AbstractEventLoop, due: float, now: float) -> None:
        """Fire :meth:`_expire_due` at ``due`` (monotonic). Requests with the usual,
        equal timeout arrive in the order of their deadlines, so a request rarely arms it:
        no timer object per request."""
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry_due = due
        self._expiry = loop.call_at(loop.time() + (due - now), self._expire_due, loop)

    def _expire_due(self, loop: asyncio.AbstractEventLoop) -> None:
        """Answer DeadlineExceeded to every request, queued or in a running batch, whose
        deadline passed (a batch that finishes later finds it answered and skips it); set
        the timer for the next deadline."""
        self._expiry = None
        self._expiry_due = math.inf
        now = time.monotonic()
        upcoming = math.inf
        for batch in (self._queue, *self._watchdog.running()):
            for pending in batch:
                due = pending.deadline
                if due is None or pending.future.done():
                    continue
                if due <= now:
                    expire(pending.future)
                elif due < upcoming:
                    upcoming = due
        if upcoming < math.inf:
            self._arm_expiry(loop, upcoming, now)

    def _leave(self, pending: Pending) -> None:
        """The request no longer counts as queued (taken into a batch or answered)."""
        if pending.queued:
            pending.queued = False
            self._waiting -= 1

    # -- on the event loop: form batches, hand them to free instances ------------------------

    def _dispatch(self) -> None:
        """Hand batches to free instances while any is free and a batch is ready.

        Called once per loop turn that queued requests, when an instance finishes and when
        the queue delay of the oldest request runs out: no scheduler task, so a request
        costs no extra loop turns.
        """
        self._dispatch_soon = False
        inline_until = 0.0  # when this turn's inline runs must let the loop go on
        while self._free and self._queue:
            if self._batching and self._delay > 0 and not self._closing and not self._ready():
                break
            batch = self._collect()
            if not batch:
                continue  # only finished or expired requests were queued
            if self._inline_ready():
                now = time.perf_counter()
                if not inline_until:
                    inline_until = now + INLINE_SLICE_S
                elif now > inline_until:
                    # Enough of this turn on the model: the loop reads sockets, then on.
                    for pending in reversed(batch):
                        self._queue.appendleft(pending)
                    self._soon()
                    break
                self._run_inline(batch)
                continue
            self._free -= 1
            self._idle.clear()
            assert self._loop is not None  # started: batches only come from submit
            self._watchdog.started(batch, self._loop)
            self._work.put(batch)
            start = time.monotonic()
            for pending in batch:
                self._leave(pending)
                self._stats.queue.add(start - pending.enqueued)
                self._observer.waited(start - pending.enqueued)
        self._observer.depth(self._waiting)

    def _soon(self) -> None:
        """Dispatch again in a coming loop turn (once)."""
        if not self._dispatch_soon and self._loop is not None:
            self._dispatch_soon = True
            self._loop.call_soon(self._dispatch)

    def _finish(
        self,
        batch: list[Pending],
        outputs: Arrays | None,
        timings: Timings,
        error: BaseException | None,
    ) -> None:
        """Back on the loop: hand the instance its next batch first (it idles until then),
        then deliver this batch's rows or its failure."""
        self._watchdog.finished(batch)
        self._free += 1
        self._dispatch()
        if error is None and outputs is not None:
            self._executed(sum(p.rows for p in batch), len(batch), timings, inline=False)
            self._deliver(batch, outputs)
        else:
            failure = self._failure(error)
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(failure)
        if self._free == self._instances and not self._waiting:
            self._idle.set()

    # -- the watchdog ------------------------------------------------------------------------

    def _overran(self, fault: str) -> None:
        """A batch ran past ``max_batch_time_s``: answer everything it holds up."""
        self._fail_all(Unavailable(f"model '{self._stats.name}' is unhealthy: {fault}"))

    def _fail_all(self, failure: InferdError) -> None:
        """Answer every queued and running request with ``failure``."""
        for pending in self._queue:
            self._leave(pending)
            if not pending.future.done():
                pending.future.set_exception(failure)
        self._queue.clear()
        for batch in self._watchdog.running():
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(failure)
        self._observer.depth(0)

    async def close(self, grace_s: float | None = None) -> bool:
        """Finish queued and running work (waiting at most ``grace_s``), then stop the
        instance threads. False when instance threads were still running and abandoned."""
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._dispatch()  # what waited for a fuller batch goes now
        finished = True
        if self._loop is not None and (self._waiting or self._free < self._instances):
            try:
                async with asyncio.timeout(grace_s):
                    await self._idle.wait()
            except TimeoutError:
                finished = self._free == self._instances
                self._fail_all(
                    Unavailable(f"model '{self._stats.name}' was unloaded before this finished")
                )
                if not finished:
                    log.error(
                        "model '%s': %d instance thread(s) still running after %g s; abandoned",
                        self._stats.name,
                        self._instances - self._free,
                        grace_s,
                    )
        for _ in self._threads:
            self._work.put(None)
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        return finished
