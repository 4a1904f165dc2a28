"""A latency target's budget: the goal, the time outside the batcher, the tail correction."""

from __future__ import annotations

import pytest

from inferd.core.serving.looplag import LoopLag
from inferd.core.serving.tail import CUT, LATE_SHARE, MIN_FACTOR, RAISE, UNSEEN, Budget
from tests.core.serving.test_looplag import closed_loop


def test_the_goal_leaves_a_share_for_what_the_server_cannot_time() -> None:
    budget = Budget(0.100)
    assert budget.goal_s == pytest.approx(0.100 * (1 - UNSEEN))
    assert budget.seconds == pytest.approx(budget.goal_s)
    assert budget.factor == 1.0 and budget.answers == budget.late == 0


def test_time_outside_the_batcher_comes_off_the_budget() -> None:
    budget = Budget(0.100)
    for _ in range(400):  # a steady 10 ms outside, answers on time
        assert not budget.answered(0.050, 0.010)
    assert budget.outside_s == pytest.approx(0.010)
    assert budget.seconds == pytest.approx(0.090 - 0.010)
    for n in range(400):  # 10 ms, then 30 ms: the mean is 20 ms, 10 ms off it every time
        budget.answered(0.050, 0.010 if n % 2 else 0.030)
    assert budget.outside_s == pytest.approx(0.020 + 3 * 0.010, rel=0.05)


def test_a_late_answer_cuts_the_factor_and_answers_on_time_restore_it() -> None:
    budget = Budget(0.100)
    assert budget.answered(0.095, 0.0)  # past the 90 ms goal, within the target: late
    assert budget.factor == pytest.approx(CUT)
    budget.failed_late()
    assert budget.factor == pytest.approx(CUT * CUT)
    assert (budget.answers, budget.late) == (2, 2)
    assert not budget.answered(0.089, 0.0)
    assert budget.factor == pytest.approx(CUT * CUT * RAISE)
    for _ in range(2000):
        budget.answered(0.010, 0.0)
    assert budget.factor == 1.0  # never above 1


def test_the_factor_settles_where_one_answer_in_two_hundred_is_late() -> None:
    assert CUT * RAISE ** round((1 - LATE_SHARE) / LATE_SHARE) == pytest.approx(1.0)
    settled, worse, better = Budget(0.100), Budget(0.100), Budget(0.100)
    for budget in (settled, worse, better):
        budget.factor = 0.6  # as after a run of late answers
    for n in range(20_000):
        settled.answered(0.100 if n % 200 == 0 else 0.050, 0.0)  # 0.5 % late
        worse.answered(0.100 if n % 40 == 0 else 0.050, 0.0)  # 2.5 % late
        better.answered(0.100 if n % 1000 == 0 else 0.050, 0.0)  # 0.1 % late
    assert settled.factor == pytest.approx(0.6, rel=0.06)
    assert worse.factor < MIN_FACTOR * 1.02  # at the floor (and a few answers on time)
    assert better.factor == 1.0


def test_the_budget_never_goes_below_its_floor() -> None:
    budget = Budget(0.100)
    for _ in range(200):  # a second outside the batcher, every answer late
        budget.answered(1.0, 1.0)
    assert budget.factor == MIN_FACTOR
    assert budget.seconds == pytest.approx(0.090 * MIN_FACTOR)


def test_the_loops_lag_is_planned_for_before_the_arrival() -> None:
    """The wait before the front runs a request comes off the budget (its mean plus three
    deviations), and an answer is judged with the mean wait before it."""
    lag = LoopLag(closed_loop())
    budget = Budget(0.100, lag)
    assert budget.before_s == 0.0 and budget.seconds == pytest.approx(0.090)
    for n in range(2000):  # 10 ms, then 30 ms: the mean is 20 ms, 10 ms off it every time
        lag.sample(0.010 if n % 2 else 0.030)
    assert budget.before_s == pytest.approx(0.020 + 3 * 0.010, rel=0.05)
    assert budget.outside_s == pytest.approx(budget.before_s)
    assert budget.seconds == pytest.approx(0.090 - budget.before_s)
    assert budget.answered(0.075, 0.0)  # within the 90 ms goal, but not with 20 ms before it
    assert not budget.answered(0.065, 0.0)
