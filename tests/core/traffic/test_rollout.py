"""The rollout controller, driven step by step with a fake clock and synthetic outcomes."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import pytest

from inferd.core.traffic.rollout import Rollout, State
from inferd.core.traffic.rollout_plan import RolloutPlan
from inferd.errors import InvalidArgument, NotFound
from inferd.metrics import Metrics

INTERVAL = 60.0
PLAN = RolloutPlan(to="2", step_interval_s=INTERVAL, min_requests=200)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeRouter:
    """The router's traffic API over a fixed set of served versions of model 'm'."""

    def __init__(self, served: tuple[str, ...] = ("1", "2")) -> None:
        self.served = list(served)
        self.known = True
        self.split: dict[str, int] | None = None
        self.history: list[dict[str, int] | None] = []

    def versions(self, model: str) -> list[str]:
        if model != "m" or not self.known:
            raise NotFound(f"model '{model}' is not known")
        return list(self.served)

    def traffic(self, model: str) -> dict[str, int] | None:
        self.versions(model)
        return None if self.split is None else dict(self.split)

    def set_traffic(self, model: str, weights: Mapping[str, int] | None) -> None:
        unserved = [v for v in weights or () if v not in self.versions(model)]
        if unserved:
            raise InvalidArgument(f"version '{unserved[0]}' is not served")
        self.split = None if weights is None else dict(weights)
        self.history.append(self.split)


def started(
    plan: RolloutPlan = PLAN, metrics: Metrics | None = None
) -> tuple[Rollout, FakeRouter, Clock]:
    router, clock = FakeRouter(), Clock()
    rollout = Rollout(
        "m", plan, "1", router, router.versions, metrics, clock=clock, wall=lambda: 1.8e9
    )
    rollout.begin()
    return rollout, router, clock


def feed(
    rollout: Rollout, version: str, count: int, seconds: float = 0.001, every: int = 0
) -> None:
    """``count`` answered requests; every ``every``-th one failed (0: none)."""
    for i in range(1, count + 1):
        if every and i % every == 0:
            rollout.record(version, "internal", 0.0)
        else:
            rollout.record(version, "ok", seconds)


def decisions(rollout: Rollout) -> list[str]:
    return [record.decision.value for record in rollout.decisions]


def count(metrics: Metrics, decision: str) -> float:
    value = metrics.registry.get_sample_value(
        "inferd_rollout_decisions_total", {"model": "m", "decision": decision}
    )
    return value or 0.0


def test_a_canary_failing_5_percent_is_rolled_back_before_its_step_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    rollout, router, clock = started(metrics=metrics)
    assert router.split == {"1": 95, "2": 5}
    feed(rollout, "1", 400)
    feed(rollout, "2", 200, every=20)
    clock.now += INTERVAL / 2
    with caplog.at_level(logging.INFO, logger="inferd.rollout"):
        rollout.check()
    assert rollout.state is State.ROLLED_BACK
    assert router.split == {"1": 100}
    assert decisions(rollout) == ["start", "rollback"]
    last = rollout.view()["decisions"][-1]
    assert last["split"] == {"1": 100}
    assert last["time"] == "2027-01-15T08:00:00.000+00:00"
    assert last["reason"] == (
        "error rate guard: canary 5.00% (10/200) exceeds stable 0.00% (0/400) by more than 1.00%"
    )
    assert count(metrics, "rollback") == 1.0
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warning] == [
        f"rollout of model 'm': rollback: {last['reason']}"
    ]


def test_a_healthy_canary_reaches_100_percent() -> None:
    metrics = Metrics()
    rollout, router, clock = started(metrics=metrics)
    for _ in PLAN.steps[:-1]:
        feed(rollout, "1", 200)
        feed(rollout, "2", 200)
        clock.now += INTERVAL
        rollout.check()
    assert rollout.state is State.SUCCEEDED
    assert router.history == [{"1": 95, "2": 5}, {"1": 75, "2": 25}, {"1": 50, "2": 50}, {"2": 100}]
    assert decisions(rollout) == ["start", "advance", "advance", "complete"]
    view = rollout.view()
    assert (view["state"], view["step"], view["percent"], view["split"]) == (
        "succeeded",
        4,
        100,
        {"2": 100},
    )
    assert view["decisions"][-1]["reason"].startswith(
        "step 3 (50 %) passed: error rate canary 0.00% (0/200), stable 0.00% (0/200); p99 canary"
    )
    assert (count(metrics, "advance"), count(metrics, "complete")) == (2.0, 1.0)


def test_a_step_does_not_advance_before_its_end() -> None:
    rollout, router, clock = started()
    feed(rollout, "1", 1000)
    feed(rollout, "2", 1000)
    clock.now += INTERVAL - 0.001
    rollout.check()
    assert (rollout.state, router.split, decisions(rollout)) == (
        State.RUNNING,
        {"1": 95, "2": 5},
        ["start"],
    )


def test_too_few_samples_hold_the_step_until_there_are_enough() -> None:
    rollout, router, clock = started()
    feed(rollout, "1", 5000)
    feed(rollout, "2", 199, every=2)  # failing, but not judged on 199 requests
    clock.now += INTERVAL
    rollout.check()
    clock.now += INTERVAL
    rollout.check()
    assert (rollout.state, router.split) == (State.RUNNING, {"1": 95, "2": 5})
    assert decisions(rollout) == ["start", "hold"]  # one hold per step
    assert rollout.decisions[-1].reason == (
        "step 1 (5 %) ended with too few requests to judge (canary 199, stable 5000; 200 each "
        "needed): held until there are"
    )
    feed(rollout, "2", 1)
    rollout.check()
    assert rollout.state is State.ROLLED_BACK


def test_the_stable_needs_enough_samples_too() -> None:
    rollout, _router, clock = started()
    feed(rollout, "1", 199)
    feed(rollout, "2", 1000)
    clock.now += INTERVAL
    rollout.check()
    assert decisions(rollout) == ["start", "hold"]


def test_a_held_step_advances_once_judged() -> None:
    rollout, router, clock = started()
    feed(rollout, "1", 300)
    feed(rollout, "2", 100)
    clock.now += INTERVAL
    rollout.check()
    feed(rollout, "2", 100)
    rollout.check()
    assert decisions(rollout) == ["start", "hold", "advance"]
    assert router.split == {"1": 75, "2": 25}
    assert rollout.view()["window"]["canary"]["requests"] == 0  # a new window for the step


@pytest.mark.parametrize(("canary_s", "rolled_back"), [(0.0016, True), (0.0014, False)])
def test_p99_guard(canary_s: float, rolled_back: bool) -> None:
    rollout, router, _clock = started()
    for _ in range(2):  # a crossing is confirmed on a fresh window
        assert rollout.state is State.RUNNING
        feed(rollout, "1", 200, seconds=0.001)
        feed(rollout, "2", 200, seconds=canary_s)
        rollout.check()
    assert (rollout.state is State.ROLLED_BACK) is rolled_back
    if rolled_back:
        reason = rollout.decisions[-1].reason
        assert reason.startswith("p99 guard: canary 1.6")
        assert "is more than 1.5 times stable 1.0" in reason
        assert reason.endswith("(at most 1.003 ms), in two windows in a row")
        assert router.split == {"1": 100}


def test_a_slow_window_is_judged_again_and_a_healthy_one_clears_it() -> None:
    rollout, _router, clock = started()
    feed(rollout, "1", 200, seconds=0.001)
    feed(rollout, "2", 200, seconds=0.003)
    rollout.check()
    assert rollout.state is State.RUNNING
    assert rollout.view()["window"]["canary"]["requests"] == 0  # a fresh window
    feed(rollout, "1", 200, seconds=0.001)
    feed(rollout, "2", 200, seconds=0.001)
    clock.now += INTERVAL
    rollout.check()
    assert decisions(rollout) == ["start", "advance"]
    # A crossing later in the step must be confirmed afresh.
    feed(rollout, "1", 200, seconds=0.001)
    feed(rollout, "2", 200, seconds=0.003)
    rollout.check()
    assert rollout.state is State.RUNNING


def test_a_few_slow_answers_are_chance_not_a_slower_canary() -> None:
    # The canary's 3 slowest of 200 at 5 ms make its p99 5 ms, more than 1.5 times the
    # stable's 1 ms; 3 answers are within the p99's confidence bounds.
    rollout, _router, _clock = started()
    feed(rollout, "1", 200, seconds=0.001)
    feed(rollout, "2", 197, seconds=0.001)
    feed(rollout, "2", 3, seconds=0.005)
    assert rollout.view()["window"]["canary"]["p99_ms"] == pytest.approx(5.0, rel=0.02)
    rollout.check()
    assert rollout.view()["window"]["canary"]["requests"] == 400 - 200  # not judged afresh
    # A tail of 10 % slow answers is beyond chance.
    feed(rollout, "2", 20, seconds=0.005)
    feed(rollout, "1", 20, seconds=0.001)
    rollout.check()
    assert rollout.view()["window"]["canary"]["requests"] == 0


def test_the_error_guard_is_against_the_stables_error_rate() -> None:
    rollout, _router, clock = started()
    feed(rollout, "1", 400, every=20)  # the stable fails 5 % as well
    feed(rollout, "2", 200, every=20)
    clock.now += INTERVAL
    rollout.check()
    assert decisions(rollout) == ["start", "advance"]


def test_client_mistakes_do_not_count_against_the_canary() -> None:
    rollout, _router, _clock = started()
    feed(rollout, "1", 200)
    feed(rollout, "2", 200)
    for _ in range(100):
        rollout.record("2", "invalid_argument", 0.0)
        rollout.record("2", "resource_exhausted", 0.0)
    rollout.check()
    assert rollout.state is State.RUNNING
    assert rollout.view()["window"]["canary"] == {
        "requests": 200,
        "errors": 0,
        "error_rate": 0.0,
        "p99_ms": pytest.approx(1.0, rel=0.02),
    }


def test_abort_gives_all_traffic_back_to_the_stable() -> None:
    metrics = Metrics()
    rollout, router, _clock = started(metrics=metrics)
    rollout.abort("stopped by request")
    assert (rollout.state, router.split) == (State.ABORTED, {"1": 100})
    assert rollout.decisions[-1].reason == "stopped by request"
    rollout.abort("again")  # an ended rollout stays as it ended
    assert decisions(rollout) == ["start", "abort"]
    assert count(metrics, "abort") == 1.0


def test_a_split_changed_by_hand_stops_the_rollout_and_stays() -> None:
    rollout, router, _clock = started()
    router.set_traffic("m", {"1": 80, "2": 20})
    rollout.check()
    assert (rollout.state, router.split) == (State.ABORTED, {"1": 80, "2": 20})
    assert rollout.decisions[-1].reason == (
        "the split changed outside the rollout (now {'1': 80, '2': 20}); left as it is"
    )


def test_an_unloaded_canary_stops_the_rollout() -> None:
    rollout, router, _clock = started()
    router.served = ["1"]
    rollout.check()
    assert (rollout.state, router.split) == (State.ABORTED, {"1": 100})
    assert rollout.decisions[-1].reason == "the canary version '2' is no longer served"


def test_an_unloaded_stable_leaves_no_split() -> None:
    rollout, router, _clock = started()
    router.served = ["2"]
    rollout.check()
    assert (rollout.state, router.split) == (State.ABORTED, None)
    assert rollout.decisions[-1].reason == "the stable version '1' is no longer served"


def test_the_view_shows_the_window_of_both_versions() -> None:
    rollout, _router, clock = started()
    feed(rollout, "1", 10)
    feed(rollout, "2", 4, every=2)
    clock.now += 12.5
    view = rollout.view()
    assert view["plan"] == PLAN.as_dict()
    assert (view["state"], view["stable"], view["canary"], view["step"], view["percent"]) == (
        "running",
        "1",
        "2",
        1,
        5,
    )
    assert view["window"]["seconds"] == 12.5
    assert view["window"]["stable"]["requests"] == 10
    assert view["window"]["canary"] == {
        "requests": 4,
        "errors": 2,
        "error_rate": 0.5,
        "p99_ms": pytest.approx(1.0, rel=0.02),
    }
    assert view["decisions"] == [
        {
            "time": "2027-01-15T08:00:00.000+00:00",
            "decision": "start",
            "step": 1,
            "split": {"1": 95, "2": 5},
            "reason": "rolling out version '2' over '1': steps [5, 25, 50, 100] %, 60 s each",
        }
    ]


def test_checks_come_at_least_every_second_and_at_the_steps_end() -> None:
    rollout, _router, clock = started()
    assert rollout.next_check_s() == 1.0
    clock.now += INTERVAL - 0.25
    assert rollout.next_check_s() == pytest.approx(0.25)
    short, _, _ = started(RolloutPlan(to="2", step_interval_s=0.2))
    assert short.next_check_s() == pytest.approx(0.05)


def test_a_model_that_is_gone_stops_the_rollout() -> None:
    rollout, router, _ = started()
    router.known = False  # unloaded, and gone from the repository
    rollout.check()
    assert rollout.state is State.ABORTED
    assert rollout.decisions[-1].reason == "model 'm' is not known"
