"""Guarded canary rollout: move a model's traffic split to a new version step by step, and
back to the stable version at once when the canary does worse.

The rule (docs/versions.md, "Guarded rollout"):

- The stable version is what answers requests without a version when the rollout starts:
  the split's main version (the highest weight other than the canary's; the later version
  on a tie), or the latest version when the model has no split.
- Step ``i`` sets the split to ``{stable: 100 - p, canary: p}`` (``p = steps[i]``) and opens
  a new window for both versions, so they are compared over the same stretch of time.
- A window is judged once both versions have answered ``min_requests`` counted requests in
  it (:data:`inferd.core.traffic.window.COUNTED_ERRORS`). A judged window crosses a guard when the
  canary's error rate exceeds the stable's by more than ``max_error_rate``, or the canary's
  p99 latency is more than ``max_p99_ratio`` times the stable's beyond doubt (the lower
  bound of the canary's p99 above the ratio times the upper bound of the stable's), and a
  fresh window (both versions' windows open anew) crosses it again: one short window can
  be slow by chance. A crossed guard rolls back
  (split ``{stable: 100}``) at once: the window is judged at every check, not only at the
  step's end.
- At the step's end (``step_interval_s`` after it began) a judged window that crossed no
  guard advances to the next step; reaching 100 completes the rollout (split
  ``{canary: 100}``). A window that is not judged yet holds the step (one ``hold``
  decision) until it is.
- The rollout stops (``aborted``) when asked to (the split goes back to the stable), when
  the canary or the stable stops being served (back to the stable, or to the latest), or
  when the split changes under it (a traffic PUT, a reload of the model; the split is left
  as it is).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from inferd.core.traffic.rollout_plan import RolloutPlan
from inferd.core.traffic.window import Window
from inferd.errors import InferdError
from inferd.metrics import Metrics

log = logging.getLogger("inferd.rollout")

#: Most seconds between two checks of a running rollout.
CHECK_INTERVAL_S: Final = 1.0
#: Checks per step at least (a short step is checked more often than every second).
CHECKS_PER_STEP: Final = 4
P99_GUARD: Final = "p99 guard"


class Traffic(Protocol):
    """Reads and sets a model's traffic split (the router)."""

    def traffic(self, model: str) -> dict[str, int] | None: ...

    def set_traffic(self, model: str, weights: Mapping[str, int] | None) -> None: ...


class State(enum.Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"


class Decision(enum.Enum):
    START = "start"
    ADVANCE = "advance"
    HOLD = "hold"
    ROLLBACK = "rollback"
    COMPLETE = "complete"
    ABORT = "abort"


@dataclasses.dataclass(frozen=True, slots=True)
class Record:
    """One decision: when (wall clock), what, at which step (1-based), the split it left."""

    at: float
    decision: Decision
    step: int
    split: dict[str, int] | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "time": datetime.fromtimestamp(self.at, UTC).isoformat(timespec="milliseconds"),
            "decision": self.decision.value,
            "step": self.step,
            "split": self.split,
            "reason": self.reason,
        }


def _rate(window: Window) -> str:
    return f"{window.error_rate():.2%} ({window.errors}/{window.requests})"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.3f} ms"


class Rollout:
    """One rollout of one model, driven by :meth:`check` (see the module's rule).

    ``clock`` is monotonic seconds (step timing), ``wall`` the epoch seconds decisions are
    stamped with; tests pass their own.
    """

    def __init__(
        self,
        model: str,
        plan: RolloutPlan,
        stable: str,
        traffic: Traffic,
        served: Callable[[str], list[str]],
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.model = model
        self.plan = plan
        self.stable = stable
        self.canary = plan.to
        self.state = State.RUNNING
        self.decisions: list[Record] = []
        self._traffic = traffic
        self._served = served
        self._metrics = metrics
        self._clock = clock
        self._wall = wall
        self._step = 0
        self._step_began = 0.0
        self._ended: float | None = None
        self._held = False
        #: Why the window before crossed the p99 guard, to be confirmed by a fresh one.
        self._suspect: str | None = None
        self._split: dict[str, int] | None = None
        self._windows: dict[str, Window] = {}

    # -- the hot path -----------------------------------------------------------------------

    def record(self, version: str, status: str, seconds: float) -> None:
        """One answered request of the model (``status`` "ok" or an error code's value)."""
        window = self._windows.get(version)
        if window is not None:
            window.add(status, seconds)

    # -- decisions -------------------------------------------------------------------------

    def begin(self) -> None:
        """Set the first step's split. A split the router refuses raises (nothing changed)."""
        plan = self.plan
        self._enter(
            0,
            Decision.START,
            f"rolling out version '{self.canary}' over '{self.stable}': steps {list(plan.steps)}"
            f" %, {plan.step_interval_s:g} s each",
        )

    def check(self) -> None:
        """Judge the window; roll back, advance, hold or stop as the rule says."""
        if self.state is not State.RUNNING:
            return
        if self._interference() is not None:
            return
        canary, stable = self._windows[self.canary], self._windows[self.stable]
        judged = min(canary.requests, stable.requests) >= self.plan.min_requests
        if judged:
            crossed = self._crossed(canary, stable)
            if crossed is not None and crossed.startswith(P99_GUARD) and self._suspect is None:
                # One short window can be slow by chance (a stall of the canary's model
                # thread delays every request queued on it): judge again on a fresh one.
                self._suspect = crossed
                self._windows = {self.stable: Window(), self.canary: Window()}
                log.info(
                    "rollout of model '%s': %s; judged again on a fresh window",
                    *(self.model, crossed),
                )
                return
            if crossed is not None:
                if self._suspect is not None and crossed.startswith(P99_GUARD):
                    crossed += ", in two windows in a row"
                self._finish(State.ROLLED_BACK, Decision.ROLLBACK, crossed, {self.stable: 100})
                return
            self._suspect = None
        if self._clock() < self._step_began + self.plan.step_interval_s:
            return
        percent = self.plan.steps[self._step]
        if not judged:
            if not self._held:
                self._held = True
                self._decide(
                    Decision.HOLD,
                    f"step {self._step + 1} ({percent} %) ended with too few requests to judge "
                    f"(canary {canary.requests}, stable {stable.requests}; "
                    f"{self.plan.min_requests} each needed): held until there are",
                )
            return
        passed = (
            f"step {self._step + 1} ({percent} %) passed: error rate canary {_rate(canary)}, "
            f"stable {_rate(stable)}; p99 canary {_ms(canary.p99())}, stable {_ms(stable.p99())}"
        )
        following = self._step + 1
        if self.plan.steps[following] == 100:
            self._step = following
            self._finish(State.SUCCEEDED, Decision.COMPLETE, passed, {self.canary: 100})
        else:
            self._enter(following, Decision.ADVANCE, passed)

    def abort(self, reason: str) -> None:
        """Stop at once; the stable version takes all the traffic again."""
        if self.state is State.RUNNING:
            self._finish(State.ABORTED, Decision.ABORT, reason, {self.stable: 100})

    def next_check_s(self) -> float:
        """Seconds until the next check: the step's end, or sooner."""
        period = min(CHECK_INTERVAL_S, self.plan.step_interval_s / CHECKS_PER_STEP)
        left = self._step_began + self.plan.step_interval_s - self._clock()
        return max(0.0, min(period, left)) if left > 0 else period

    def _interference(self) -> str | None:
        """Stop the rollout when its versions or its split changed under it; the reason."""
        try:
            served = self._served(self.model)
            current = self._traffic.traffic(self.model)
        except InferdError as exc:  # the model is gone
            self._finish(State.ABORTED, Decision.ABORT, exc.message, None, keep=True)
            return exc.message
        for role, version in (("canary", self.canary), ("stable", self.stable)):
            if version not in served:
                reason = f"the {role} version '{version}' is no longer served"
                back = {self.stable: 100} if self.stable in served else None
                self._finish(State.ABORTED, Decision.ABORT, reason, back)
                return reason
        if current != self._split:
            reason = f"the split changed outside the rollout (now {current}); left as it is"
            self._finish(State.ABORTED, Decision.ABORT, reason, None, keep=True)
            return reason
        return None

    def _crossed(self, canary: Window, stable: Window) -> str | None:
        plan = self.plan
        if canary.error_rate() - stable.error_rate() > plan.max_error_rate:
            return (
                f"error rate guard: canary {_rate(canary)} exceeds stable {_rate(stable)} by "
                f"more than {plan.max_error_rate:.2%}"
            )
        # Two p99s of a few hundred answers each differ by chance (on a busy machine, a
        # few preempted requests decide them): the canary is judged slower only when it is
        # slower beyond doubt, its p99's lower bound above the ratio times the stable's
        # upper bound (inferd.core.traffic.window.Window.p99_bounds).
        canary_p99, stable_p99 = canary.p99_bounds(), stable.p99_bounds()
        if (
            canary_p99 is not None
            and stable_p99 is not None
            and canary_p99[0] > plan.max_p99_ratio * stable_p99[1]
        ):
            return (
                f"{P99_GUARD}: canary {_ms(canary.p99())} (at least {_ms(canary_p99[0])}) is "
                f"more than {plan.max_p99_ratio:g} times stable {_ms(stable.p99())} (at most "
                f"{_ms(stable_p99[1])})"
            )
        return None

    def _enter(self, step: int, decision: Decision, reason: str) -> None:
        percent = self.plan.steps[step]
        self._apply({self.stable: 100 - percent, self.canary: percent})
        self._step = step
        self._step_began = self._clock()
        self._held = False
        self._suspect = None
        self._windows = {self.stable: Window(), self.canary: Window()}
        self._decide(decision, reason)

    def _finish(
        self,
        state: State,
        decision: Decision,
        reason: str,
        split: dict[str, int] | None,
        *,
        keep: bool = False,
    ) -> None:
        """End the rollout in ``state``; the split becomes ``split`` (None: no split, the
        latest version answers) unless ``keep``."""
        self.state = state
        self._ended = self._clock()
        if not keep:
            try:
                self._apply(split)
            except InferdError as exc:
                reason = f"{reason}; the split could not be set: {exc.message}"
        self._decide(decision, reason)

    def _apply(self, split: dict[str, int] | None) -> None:
        self._traffic.set_traffic(self.model, split)
        self._split = self._traffic.traffic(self.model)

    def _decide(self, decision: Decision, reason: str) -> None:
        record = Record(self._wall(), decision, self._step + 1, self._split, reason)
        self.decisions.append(record)
        level = logging.WARNING if decision in (Decision.ROLLBACK, Decision.ABORT) else logging.INFO
        log.log(level, "rollout of model '%s': %s: %s", self.model, decision.value, reason)
        if self._metrics is not None:
            self._metrics.rollout_decided(self.model, decision.value)

    # -- what GET shows ----------------------------------------------------------------------

    def view(self) -> dict[str, Any]:
        """The state, the step, the split, the window's figures and every decision."""
        now = self._clock() if self._ended is None else self._ended
        return {
            "model": self.model,
            "state": self.state.value,
            "stable": self.stable,
            "canary": self.canary,
            "step": self._step + 1,
            "percent": self.plan.steps[self._step],
            "split": self._split,
            "plan": self.plan.as_dict(),
            "window": {
                "seconds": round(max(0.0, now - self._step_began), 3),
                **{role: self._windows[v].figures() for role, v in self._roles()},
            },
            "decisions": [record.as_dict() for record in self.decisions],
        }

    def _roles(self) -> tuple[tuple[str, str], ...]:
        return (("stable", self.stable), ("canary", self.canary))
