"""Latency targets: a batcher that sizes its batches and admits requests to hold
``batching.latency_target_ms`` (a p99, from the request's arrival to its answer) by itself.

The rule (docs/performance.md, "Latency targets"):

- Compute time per batch size is measured on every batch: a running mean per size seen
  (each new batch weighs :data:`WEIGHT`), and a straight line ``c(b) = a + k * b``
  through those means (least squares, each size weighted by how often it ran, capped) to
  predict sizes not seen yet. With one size ``s`` seen, ``c(b) = c(s) * b / s``.
  Predictions are that line times ``1 + 2 * s``, ``s`` the running mean of how far each
  batch's time was from its prediction, relative: on a machine whose speed varies, the
  prediction moves toward the slow batches, since the target is a tail, not a mean.
- Budget: what the limit and admission plan for, kept by
  :class:`~inferd.core.serving.tail.Budget` from the answers seen end to end: the target
  less a share for what the server cannot time, times a factor that late answers cut and
  answers on time restore (it settles where 0.5 % of the answers are late), less the time
  spent outside the batcher (decoding, encoding, the event loop's queue).
- Batch size limit: the largest ``b`` within ``max_batch_size`` with ``2 * c(b) <= budget``
  (a request may wait for one running batch, then run in its own). The batcher waits for
  and takes at most that many rows.
- Predicted wait of a request of ``r`` rows arriving now, with ``q`` rows queued, ``I``
  instances and limit ``b`` (or the rows of one request, if more): what is left of the
  running batches when every instance is busy (``c(b)`` less the time since the last
  batch started), plus ``ceil((q + r) / (b * I))`` rounds of ``c(min(b, q + r))``, plus
  the queue delay when fewer than ``b`` rows wait.
- Admission: a request whose predicted wait exceeds the budget, or the time left before
  its deadline, is refused at once: Unavailable (HTTP 503 with Retry-After, gRPC
  UNAVAILABLE), counted in ``inferd_early_refusals`` by reason (``target``, ``deadline``).
  A V2 REST request is asked :meth:`TargetBatcher.admit` first, before its body is decoded
  (:mod:`inferd.core.serving.early`, for the models named in :data:`TARGETED`).
  Until the first batch is measured nothing is refused and the limit is ``max_batch_size``;
  a model with nothing queued or running admits a request whatever the prediction (its
  time is measured again: one slow batch cannot shut a model off for good).
- At the queue: when a batch is formed, a request in it that would be answered past the
  goal (time since arrival, the batch's predicted compute, the loop's mean lag) is refused
  the same way (``queue``) and judged late, unless the compute alone is past the goal or
  it is a lone request on an idle model (:meth:`TargetBatcher._collect`).

Answers are timed from the request's arrival (``arrived``, given by the transport) to the
event loop's next turn after the rows came back. A model without a target uses
:class:`~inferd.core.serving.batcher.Batcher` itself, so an unset target costs nothing
per request.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Callable
from typing import Any, Final

from inferd.core.serving.batch import Pending
from inferd.core.serving.batcher import Arrays, Batcher, BatchObserver, RunFn
from inferd.core.serving.looplag import probe
from inferd.core.serving.tail import Budget
from inferd.core.store.versions import VersionSettings
from inferd.errors import DeadlineExceeded, Unavailable
from inferd.metrics import Metrics
from inferd.serving_metrics import REFUSAL_REASONS, TargetGauges

#: How much one new batch moves the mean compute time of its size.
WEIGHT: Final = 0.2
#: Most weight one batch size gets in the line fit (a size seen often is not trusted more).
MAX_FIT_WEIGHT: Final = 32
#: Predictions are the line times ``1 + SPREAD * s``, ``s`` the running mean of how far a
#: batch's time was from its prediction (relative): a tail, not a mean, is the target.
SPREAD: Final = 2.0

#: Models of this process with a latency target running, and how many of their versions
#: have one: what the V2 REST route reads (a lookup, no call) to refuse before decoding.
TARGETED: Final[dict[str, int]] = {}


class ComputeModel:
    """Compute seconds per batch size, from the batches measured."""

    def __init__(self) -> None:
        self._mean: dict[int, float] = {}
        self._count: dict[int, int] = {}
        self._a = 0.0
        self._k = 0.0
        #: Running mean of |measured - predicted| / predicted.
        self.spread = 0.0

    @property
    def measured(self) -> bool:
        return bool(self._mean)

    def add(self, rows: int, seconds: float) -> None:
        if self._mean:
            expected = self.line(rows)
            miss = abs(seconds - expected) / expected if expected > 0 else 0.0
            self.spread += WEIGHT * (miss - self.spread)
        mean = self._mean.get(rows)
        self._mean[rows] = seconds if mean is None else mean + WEIGHT * (seconds - mean)
        self._count[rows] = self._count.get(rows, 0) + 1
        self._fit()

    def _fit(self) -> None:
        if len(self._mean) == 1:
            ((size, mean),) = self._mean.items()
            self._a, self._k = 0.0, mean / size
            return
        weights = {s: min(self._count[s], MAX_FIT_WEIGHT) for s in self._mean}
        total = sum(weights.values())
        mx = sum(w * s for s, w in weights.items()) / total
        my = sum(w * self._mean[s] for s, w in weights.items()) / total
        var = sum(w * (s - mx) ** 2 for s, w in weights.items())
        cov = sum(w * (s - mx) * (self._mean[s] - my) for s, w in weights.items())
        k = max(cov / var, 0.0)
        a = my - k * mx
        if a < 0:  # through the origin instead
            a = 0.0
            k = sum(w * s * self._mean[s] for s, w in weights.items()) / sum(
                w * s * s for s, w in weights.items()
            )
        self._a, self._k = a, k

    def line(self, rows: int) -> float:
        """The fitted line at ``rows``: the mean compute seconds of such a batch."""
        return self._a + self._k * rows

    def seconds(self, rows: int) -> float:
        """Predicted compute seconds of a batch of ``rows``, the spread included (0
        before any measurement)."""
        return self.line(rows) * (1 + SPREAD * self.spread)

    def largest_within(self, budget_s: float, most: int) -> int:
        """The largest batch size up to ``most`` whose predicted compute fits ``budget_s``
        (1 at least)."""
        budget = budget_s / (1 + SPREAD * self.spread)
        if self._k <= 0:
            return most if self._a <= budget else 1
        return max(1, min(most, math.floor((budget - self._a) / self._k)))


class _Measuring:
    """The batcher's observer: feeds the target and passes everything on."""

    def __init__(self, batcher: TargetBatcher, inner: BatchObserver | None) -> None:
        self._batcher = batcher
        self._inner = inner

    def depth(self, queued: int) -> None:
        if self._inner is not None:
            self._inner.depth(queued)

    def waited(self, seconds: float) -> None:
        self._batcher.dispatched()  # once per request of a batch that just started
        if self._inner is not None:
            self._inner.waited(seconds)

    def executed(self, rows: int, seconds: float) -> None:
        self._batcher.measured(rows, seconds)
        if self._inner is not None:
            self._inner.executed(rows, seconds)


class TargetBatcher(Batcher):
    """A :class:`Batcher` that holds a latency target (see the module's rule)."""

    def __init__(
        self,
        run: RunFn,
        *,
        target_s: float,
        gauges: TargetGauges | None = None,
        **options: Any,
    ) -> None:
        observer = _Measuring(self, options.pop("observer", None))
        super().__init__(run, observer=observer, **options)
        self._target = target_s
        self._gauges = gauges
        self._rows_most = max(int(options.get("max_batch_size", 1)), 1)
        self._lanes = max(int(options.get("instances", 1)), 1)
        self._target_delay_s = float(options.get("max_queue_delay_s", 0.0))
        self._batching_rows = int(options.get("max_batch_size", 0)) > 0
        self._costs = ComputeModel()
        self._budget = Budget(target_s)
        self._rows_limit = self._rows_most
        self._rows_per_request = 1.0
        self._batch_started = 0.0  # when the last batch went to an instance
        self._refusals = dict.fromkeys(REFUSAL_REASONS, 0)
        self._model_name = options["stats"].name
        options["stats"].sections["latency_target"] = self.state
        if gauges is not None:
            gauges.limit(self._rows_limit)

    @property
    def batch_limit(self) -> int:
        return self._rows_limit

    def start(self) -> None:
        """Bind to the running loop, hold its lag probe (the wait before arrivals), and
        name the model in :data:`TARGETED` (refused before decoding, see early.py)."""
        super().start()
        if self._budget.lag is None:
            lag = probe(asyncio.get_running_loop())
            lag.hold()
            self._budget.lag = lag
            TARGETED[self._model_name] = TARGETED.get(self._model_name, 0) + 1

    async def close(self, grace_s: float | None = None) -> bool:
        lag, self._budget.lag = self._budget.lag, None
        if lag is not None:
            lag.release()
            left = TARGETED.pop(self._model_name, 1) - 1
            if left:
                TARGETED[self._model_name] = left
        return await super().close(grace_s)

    def predicted_wait(self, rows: int = 1) -> float | None:
        """Seconds of queue wait and compute predicted for ``rows`` arriving now; None
        before the first batch is measured."""
        if not self._costs.measured:
            return None
        compute: Callable[[int], float] = self._costs.seconds
        queued = self.queued * self._rows_per_request + rows
        # A batch takes at least one whole request, whatever the limit.
        batch = max(self._rows_limit, math.ceil(self._rows_per_request))
        wait = 0.0
        if self.running >= self._lanes:
            since = time.monotonic() - self._batch_started
            wait = max(0.0, compute(batch) - since)
        rounds = math.ceil(queued / (batch * self._lanes))
        wait += rounds * compute(min(batch, math.ceil(queued)))
        if queued < batch:
            wait += self._target_delay_s
        return wait

    def state(self) -> dict[str, Any]:
        """The statistics' ``latency_target`` section."""
        wait = self.predicted_wait()
        budget = self._budget
        return {
            "target_ms": self._target * 1000,
            "budget_ms": round(budget.seconds * 1000, 3),
            "outside_ms": round(budget.outside_s * 1000, 3),
            "before_ms": round(budget.before_s * 1000, 3),
            "factor": round(budget.factor, 4),
            "batch_limit": self._rows_limit,
            "predicted_wait_ms": None if wait is None else round(wait * 1000, 3),
            "answers": budget.answers,
            "late": budget.late,
            "refused": dict(self._refusals),
        }

    async def submit(
        self,
        inputs: Arrays,
        deadline: float | None = None,
        arrived: float | None = None,
        alone: bool = False,
    ) -> Arrays:
        rows = next(iter(inputs.values())).shape[0] if self._batching_rows and inputs else 1
        self._rows_per_request += WEIGHT * (rows - self._rows_per_request)
        wait = self.admit(rows)
        if wait is not None and (self.queued or self.running):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and wait > left:
                self._refuse(
                    "deadline",
                    f"model '{self._model_name}' would answer in about {wait * 1000:.0f} ms, past "
                    f"the request's deadline ({max(left, 0) * 1000:.0f} ms left); retry later",
                    wait,
                )
        started = time.monotonic()
        if arrived is None or arrived > started:
            arrived = started
        try:
            results = await super().submit(inputs, deadline, arrived, alone)
        except DeadlineExceeded:
            if wait is not None:
                self._budget.failed_late()
                self._plan()
            raise
        if wait is not None:  # admitted on a prediction (not before the first measurement)
            # Timed at the loop's next turn: after the answer's encoding and write that
            # follow in this one.
            asyncio.get_running_loop().call_soon(
                self._answered, arrived, time.monotonic() - started
            )
        return results

    def admit(self, rows: int | None = None) -> float | None:
        """The target's admission of a request of ``rows`` (None: as many as the running
        mean per request, for a request not decoded yet): its predicted wait (None before
        the first measurement), or Unavailable when that is past the budget."""
        if rows is None:
            rows = max(math.ceil(self._rows_per_request), 1)
        wait = self.predicted_wait(rows)
        if wait is not None and (self.queued or self.running):
            budget = self._budget.seconds
            if wait > budget:
                self._refuse(
                    "target",
                    f"model '{self._model_name}' would answer in about "
                    f"{(wait + self._budget.outside_s) * 1000:.0f} ms, past its latency target "
                    f"of {self._target * 1000:g} ms; retry later",
                    wait - budget,
                )
        return wait

    def _answered(self, arrived: float, inside_s: float) -> None:
        seconds = time.monotonic() - arrived
        if self._budget.answered(seconds, seconds - inside_s):
            self._plan()

    def _refuse(self, reason: str, message: str, retry_after_s: float) -> None:
        raise self._refusal(reason, message, retry_after_s)

    def _refusal(self, reason: str, message: str, retry_after_s: float) -> Unavailable:
        """A refusal for ``reason``, counted in the statistics and the metric."""
        self._refusals[reason] += 1
        if self._gauges is not None:
            self._gauges.refused(reason)
        return Unavailable(message, retry_after_s=retry_after_s)

    def _collect(self) -> list[Pending]:
        """The batch the queue gives, less the requests it would answer past the goal:
        their time since arrival, the batch's predicted compute and the loop's mean lag
        together over it (a wait the admission did not predict: a burst, a slower
        machine). Each is refused (``queue``) and counts as late for the correction. When
        the compute alone is past the goal nothing is refused here (no request could be
        on time; admission holds the load), so a slow batch cannot shut a model off; nor
        is a lone request on an idle model, which delays no one."""
        batch = super()._collect()
        if not self._costs.measured or (len(batch) < 2 and not self.running and not self._queue):
            return batch
        budget = self._budget
        lag = 0.0 if budget.lag is None else budget.lag.mean
        compute = self._costs.seconds(sum(p.rows for p in batch))
        if compute + lag >= budget.goal_s:
            return batch
        latest = time.monotonic() + compute + lag - budget.goal_s
        kept = []
        for pending in batch:
            if pending.arrived is None or pending.arrived >= latest:
                kept.append(pending)
            else:
                self._shed(pending, latest + budget.goal_s - pending.arrived, compute)
        if len(kept) < len(batch):
            self._plan()
        return kept

    def _shed(self, pending: Pending, predicted_s: float, compute_s: float) -> None:
        self._leave(pending)
        self._budget.failed_late()
        pending.future.set_exception(
            self._refusal(
                "queue",
                f"model '{self._model_name}' would answer in about {predicted_s * 1000:.0f} ms "
                f"after a longer wait than predicted, past its latency target of "
                f"{self._target * 1000:g} ms; retry later",
                compute_s,
            )
        )

    # -- from the observer, on the event loop ---------------------------------------------

    def dispatched(self) -> None:
        self._batch_started = time.monotonic()

    def measured(self, rows: int, seconds: float) -> None:
        self._costs.add(rows, seconds)
        self._plan()

    def _plan(self) -> None:
        limit = self._costs.largest_within(self._budget.seconds / 2, self._rows_most)
        if limit != self._rows_limit:
            self._rows_limit = limit
            self.limit_rows(limit)
        if self._gauges is not None:
            self._gauges.limit(limit)
            self._gauges.wait(self.predicted_wait() or 0.0)


def batcher_class(
    settings: VersionSettings, metrics: Metrics | None, model: str, version: str
) -> Callable[..., Batcher]:
    """What builds the version's batcher: :class:`Batcher` itself without a latency
    target, else a :class:`TargetBatcher` bound to the target and its metrics."""
    if settings.latency_target_s is None:
        return Batcher
    gauges = None if metrics is None else TargetGauges(metrics.serving, model, version)
    return functools.partial(TargetBatcher, target_s=settings.latency_target_s, gauges=gauges)
