"""What a latency target leaves to the batcher: the budget for queue wait plus compute,
kept from the answers seen end to end (inferd.core.serving.latency plans with it).

The rule (docs/performance.md, "Latency targets"):

- **Goal**: the target less :data:`UNSEEN` of it, left for what the server cannot time
  (the client's own time, what the loop's lag below does not catch of the wait before
  the front runs a request). Each answer is timed from the request's arrival (when the
  transport's front first ran it; the batcher's queue, where the transport gives none)
  to the loop's next turn after its rows came back (its encoding and write, when they
  follow in the same turn as they usually do).
- **Outside**: the part of an answer's time spent outside the batcher (arrival to queue,
  and after the rows came back) is followed by a running mean and mean deviation
  (:data:`OUTSIDE_WEIGHT` per answer); the batcher plans for the mean plus
  :data:`OUTSIDE_SPREAD` deviations of it.
- **Before the arrival**: the wait before the front runs a request (socket buffer, the
  loop's ready queue) is estimated by the loop's lag
  (:class:`~inferd.core.serving.looplag.LoopLag`): the plan's time outside adds its mean
  plus :data:`OUTSIDE_SPREAD` deviations, and each answer is judged with its mean added
  (an estimate of the time its client saw).
- **Correction**: the target is a tail, so what is planned for is the goal times a
  factor, 1 at first, moved by each answer (a stochastic approximation of the quantile,
  as Robbins and Monro gave it): an answer past the goal (or a request failed at its
  deadline) multiplies it by ``exp(-STEP * (1 - LATE_SHARE))``, one within it by
  ``exp(STEP * LATE_SHARE)``, up to 1 and never below :data:`MIN_FACTOR`. The two
  balance where :data:`LATE_SHARE` of the answers are late: the factor settles where
  the prediction's own errors (a machine whose speed varies, a loop that is busy) leave
  0.5 % of the answers past the goal, half of what a p99 allows (a p99 over a few
  seconds moves around its long-run value). A request admitted before the first batch was
  measured (nothing was predicted for it) is not judged.
- **Budget**: ``goal * factor - outside``, never below :data:`MIN_FACTOR` of the goal (a
  burst of time outside the batcher does not shut batching off; the target is then
  missed, and the statistics show why).
"""

from __future__ import annotations

import math
from typing import Final

from inferd.core.serving.looplag import LoopLag

#: Share of the target left for what the server cannot time.
UNSEEN: Final = 0.1
#: Share of the answers the correction lets past the goal: half of what a p99 allows, so
#: that the p99 holds over short windows too, not only on average.
LATE_SHARE: Final = 0.005
#: How far one answer moves the factor (its logarithm).
STEP: Final = 0.05
#: The factor (and the budget, as a share of the goal) never goes below this.
MIN_FACTOR: Final = 0.2
#: How much one answer moves the running mean (and mean deviation) of the time outside.
OUTSIDE_WEIGHT: Final = 0.05
#: The time outside planned for: its mean plus this many mean deviations.
OUTSIDE_SPREAD: Final = 3.0

#: What a late answer multiplies the factor by, and one on time.
CUT: Final = math.exp(-STEP * (1 - LATE_SHARE))
RAISE: Final = math.exp(STEP * LATE_SHARE)


class Budget:
    """A target's budget for queue wait plus compute (see the module's rule)."""

    def __init__(self, target_s: float, lag: LoopLag | None = None) -> None:
        self.target_s = target_s
        #: The loop's lag, once the batcher runs on a loop (None: nothing before the arrival).
        self.lag = lag
        self.goal_s = target_s * (1 - UNSEEN)
        self.factor = 1.0
        self._outside = 0.0
        self._outside_dev = 0.0
        #: Answers timed, and those past the goal (failed at their deadline included).
        self.answers = 0
        self.late = 0

    @property
    def outside_s(self) -> float:
        """The time outside the batcher planned for (before the arrival included)."""
        return self._outside + OUTSIDE_SPREAD * self._outside_dev + self.before_s

    @property
    def before_s(self) -> float:
        """The wait before the arrival planned for: the loop's lag, mean plus spread."""
        lag = self.lag
        return 0.0 if lag is None else lag.mean + OUTSIDE_SPREAD * lag.deviation

    @property
    def seconds(self) -> float:
        """What queue wait plus compute may take."""
        return max(self.goal_s * self.factor - self.outside_s, self.goal_s * MIN_FACTOR)

    def answered(self, seconds: float, outside_s: float) -> bool:
        """One answer took ``seconds`` from its arrival, ``outside_s`` of them outside the
        batcher. True when it was late (the factor was cut): when it, with the loop's mean
        lag before it, is past the goal."""
        if self.lag is not None:
            seconds += self.lag.mean
        self._outside += OUTSIDE_WEIGHT * (outside_s - self._outside)
        self._outside_dev += OUTSIDE_WEIGHT * (abs(outside_s - self._outside) - self._outside_dev)
        return self._judge(seconds > self.goal_s)

    def failed_late(self) -> None:
        """A request failed at its deadline: late, whatever its time."""
        self._judge(True)

    def _judge(self, late: bool) -> bool:
        self.answers += 1
        if late:
            self.late += 1
            self.factor = max(MIN_FACTOR, self.factor * CUT)
        elif self.factor < 1.0:
            self.factor = min(1.0, self.factor * RAISE)
        return late
