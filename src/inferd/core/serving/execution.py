"""Running a batch: the model call in an instance thread or inline on the event loop, its
outputs checked and split back to the requests, and the running measurement of its cost
that decides whether a version may run inline.

Part of :class:`inferd.core.serving.batcher.Batcher` (its contract is written there); this
mixin reads the batcher's runtime, statistics and thread queue, and calls back its
``_leave`` and ``_finish``.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import time
from collections.abc import Callable
from typing import Final

from inferd.core.serving.batch import (
    NO_TIME,
    Arrays,
    BatchObserver,
    Pending,
    RunFn,
    Timings,
    joined,
)
from inferd.core.serving.stats import VersionStats
from inferd.errors import InferdError, InternalError

log = logging.getLogger("inferd.batcher")

#: Model calls measured before a version may run inline.
INLINE_MIN_SAMPLES: Final = 8
#: Weight of the newest call in the running average of a call's time.
_COST_WEIGHT: Final = 0.1


class Execution:
    """A batch's model call, where it runs, and what it cost."""

    _run_fn: RunFn
    _prepare_thread: Callable[[], None] | None
    _stats: VersionStats
    _observer: BatchObserver
    _batching: bool
    _loop: asyncio.AbstractEventLoop | None
    #: Instance threads take batches from here; None tells one of them to stop.
    _work: queue.SimpleQueue[list[Pending] | None]
    _call_cost: float  # running average of a model call, in seconds
    #: Measure an instance thread's call by its CPU time (see :meth:`_compute`).
    _cost_by_cpu: bool
    _calls: int  # model calls measured (up to INLINE_MIN_SAMPLES)
    _loop_prepared: bool
    _inline: bool  # inline runs are possible at all (the batcher's rule)
    _inline_limit: float  # a call measured under this runs inline
    _instances: int
    _free: int  # instances not running a batch

    def _leave(self, pending: Pending) -> None:
        raise NotImplementedError  # the batcher's

    def _finish(
        self,
        batch: list[Pending],
        outputs: Arrays | None,
        timings: Timings,
        error: BaseException | None,
    ) -> None:
        raise NotImplementedError  # the batcher's

    def seed_call_cost(self, seconds: float) -> None:
        """Seed the running measurement of a call (at load, from timed warm-up calls), so
        a new version is judged like one that has served a while."""
        self._call_cost = seconds
        self._calls = INLINE_MIN_SAMPLES

    def _inline_ready(self) -> bool:
        """A call may run on the loop now: inline runs are on, no batch of the version runs
        in an instance thread, and its calls measured cheap (:mod:`batcher`'s contract)."""
        return (
            self._inline
            and self._free == self._instances
            and self._calls >= INLINE_MIN_SAMPLES
            and self._call_cost < self._inline_limit
        )

    def _run_inline(self, batch: list[Pending]) -> None:
        """A batch's call, here on the loop (no batch is running and the model is cheap):
        no hop to an instance thread and back."""
        start = time.monotonic()
        for pending in batch:
            self._leave(pending)
            self._stats.queue.add(start - pending.enqueued)
            self._observer.waited(start - pending.enqueued)
        lone = len(batch) == 1
        rows = batch[0].rows if lone else sum(p.rows for p in batch)
        try:
            outputs = self._call_inline(
                batch[0].inputs if lone else joined(batch), rows, len(batch)
            )
        except InferdError as failure:
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(failure)
            return
        self._deliver(batch, outputs)

    def _run_alone(self, inputs: Arrays, rows: int) -> Arrays:
        """A lone request's call, at once on the loop, without queueing it: no future,
        no loop turn to dispatch it and none to wake its caller (:mod:`batcher`'s
        contract). Raises what the request's batch would fail with."""
        self._stats.queue.add(0.0)
        self._observer.waited(0.0)
        return self._call_inline(inputs, rows, 1)

    def _call_inline(
        self, inputs: Callable[[], Arrays] | Arrays, rows: int, requests: int
    ) -> Arrays:
        """The model called on the loop and counted; raises the requests' failure."""
        if not self._loop_prepared and self._prepare_thread is not None:
            self._prepare_thread()  # settings a framework keeps per thread, as for instances
        self._loop_prepared = True
        try:
            outputs, timings = self._compute(inputs, rows, self._cost_by_cpu)
        except BaseException as exc:  # a model's SystemExit must not take the loop
            raise self._failure(exc)  # noqa: B904  (its cause is set by _failure)
        self._executed(rows, requests, timings, inline=True)
        return outputs

    def _executed(self, rows: int, requests: int, timings: Timings, inline: bool) -> None:
        """Count a finished call in the statistics and the running average of its cost.

        The average is what a call costs the loop: measured on the loop, or at load by
        warm-up calls. Once it holds :data:`INLINE_MIN_SAMPLES` calls, a call in an instance
        thread may lower it (the model is cheaper than measured) but never raise it: there,
        the loop's work competes with the call for the interpreter lock, and each hand-over
        of the lock is CPU time of the call's thread (several times a tiny model's own
        compute on a loaded server), so a cheap model would measure slow exactly under
        load and never come back to the loop."""
        join, call, check, cost = timings
        self._stats.record_batch(rows, requests, join, call, check)
        self._observer.executed(rows, join + call + check)
        if self._calls < INLINE_MIN_SAMPLES:
            self._calls += 1
            self._call_cost += (cost - self._call_cost) / self._calls
        elif inline or cost < self._call_cost:
            self._call_cost += (cost - self._call_cost) * _COST_WEIGHT

    def _failure(self, error: BaseException | None) -> InferdError:
        """What the requests of a failed call get: the model's own error when it raised
        one of the tree's, else an internal error caused by what it raised."""
        if isinstance(error, InferdError):
            return error
        failure = InternalError(
            f"model '{self._stats.name}' failed: {type(error).__name__}: {error}"
        )
        failure.__cause__ = error  # the model's traceback, for the service's log line
        return failure

    # -- in an instance thread ---------------------------------------------------------------

    def _serve_instance(self) -> None:
        assert self._loop is not None
        if self._prepare_thread is not None:
            try:
                self._prepare_thread()
            except Exception:
                log.exception("model '%s': preparing an instance thread failed", self._stats.name)
        while True:
            batch = self._work.get()
            if batch is None:
                return
            try:
                outputs, timings = self._compute(
                    joined(batch), sum(p.rows for p in batch), self._cost_by_cpu
                )
            except BaseException as exc:  # a model's SystemExit must not take the instance
                result: tuple[Arrays | None, Timings, BaseException | None] = (None, NO_TIME, exc)
            else:
                result = (outputs, timings, None)
            try:
                self._loop.call_soon_threadsafe(self._finish, batch, *result)
            except RuntimeError:
                return  # the loop is closed: nobody is waiting any more

    def _compute(
        self, inputs: Callable[[], Arrays] | Arrays, rows: int, by_cpu: bool = False
    ) -> tuple[Arrays, Timings]:
        """Run the model on ``inputs`` (a function that joins a batch's rows, timed with
        it) and check that every output has ``rows`` rows. Its cost for the inline rule is
        the elapsed time, or (``by_cpu``: a model that computes on the calling thread) this
        thread's CPU time, which leaves out waits for the interpreter lock and the time the
        machine gave other processes."""
        c0 = time.thread_time() if by_cpu else 0.0
        t0 = time.perf_counter()
        if callable(inputs):
            inputs = inputs()
        t1 = time.perf_counter()
        outputs = self._run_fn(inputs)
        t2 = time.perf_counter()
        if self._batching:
            for name, array in outputs.items():
                if array.ndim == 0 or array.shape[0] != rows:
                    raise InternalError(
                        f"model '{self._stats.name}' returned {array.shape[0] if array.ndim else 0}"
                        f" rows of output '{name}' for a batch of {rows}"
                    )
        t3 = time.perf_counter()
        cost = time.thread_time() - c0 if by_cpu else t3 - t0
        return outputs, (t1 - t0, t2 - t1, t3 - t2, cost)

    # -- back on the loop --------------------------------------------------------------------

    def _deliver(self, batch: list[Pending], outputs: Arrays) -> None:
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
