"""A rollout's plan: defaults, and a clear message for every bad field."""

from __future__ import annotations

from typing import Any

import pytest

from inferd.core.traffic.rollout_plan import RolloutPlan, parse_plan
from inferd.errors import InvalidArgument


def test_only_to_is_required() -> None:
    assert parse_plan({"to": "2"}) == RolloutPlan(
        to="2",
        steps=(5, 25, 50, 100),
        step_interval_s=60.0,
        max_error_rate=0.01,
        max_p99_ratio=1.5,
        min_requests=200,
    )


def test_every_field() -> None:
    doc = {
        "to": "v2.0",
        "steps": [10, 100],
        "step_interval_s": 0.5,
        "max_error_rate": 0,
        "max_p99_ratio": 2,
        "min_requests": 1,
    }
    plan = parse_plan(doc)
    assert plan.as_dict() == {**doc, "step_interval_s": 0.5, "max_error_rate": 0.0}
    assert plan.max_p99_ratio == 2.0


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([1, 2], "a rollout is a JSON object"),
        ({}, "rollout field 'to' is required"),
        ({"to": "2", "step": [5, 100]}, "unknown rollout field 'step'; the fields are ['to',"),
        ({"to": 2}, "rollout field 'to' must be a version name (a string"),
        ({"to": "../1"}, "version name '../1' is not allowed"),
        ({"to": "2", "steps": [100]}, "at least one step below 100"),
        ({"to": "2", "steps": "5,100"}, "rollout field 'steps' must be a list"),
        ({"to": "2", "steps": [50, 25, 100]}, "increase from 1 up to 100"),
        ({"to": "2", "steps": [5, 5, 100]}, "increase from 1 up to 100"),
        ({"to": "2", "steps": [0, 100]}, "increase from 1 up to 100"),
        ({"to": "2", "steps": [5, 101]}, "increase from 1 up to 100"),
        ({"to": "2", "steps": [5, 50.5, 100]}, "increase from 1 up to 100"),
        ({"to": "2", "steps": [True, 100]}, "increase from 1 up to 100"),
        ({"to": "2", "steps": [5, 50]}, "(the last step is 100), got [5, 50]"),
        ({"to": "2", "step_interval_s": 0}, "'step_interval_s' must be a number from 0.01 to"),
        ({"to": "2", "step_interval_s": 86401}, "'step_interval_s' must be a number"),
        ({"to": "2", "step_interval_s": "60"}, "'step_interval_s' must be a number"),
        ({"to": "2", "step_interval_s": True}, "'step_interval_s' must be a number"),
        ({"to": "2", "step_interval_s": 10**400}, "'step_interval_s' must be a number"),
        ({"to": "2", "max_error_rate": -0.1}, "'max_error_rate' must be a number from 0 to 1,"),
        ({"to": "2", "max_error_rate": 1.5}, "'max_error_rate' must be a number from 0 to 1,"),
        ({"to": "2", "max_error_rate": None}, "'max_error_rate' must be a number"),
        ({"to": "2", "max_p99_ratio": 0.9}, "'max_p99_ratio' must be a number from 1 to 1000,"),
        ({"to": "2", "max_p99_ratio": float("inf")}, "'max_p99_ratio' must be a number"),
        ({"to": "2", "min_requests": 0}, "'min_requests' must be an integer from 1 to"),
        ({"to": "2", "min_requests": 200.0}, "'min_requests' must be an integer"),
        ({"to": "2", "min_requests": False}, "'min_requests' must be an integer"),
    ],
)
def test_a_bad_field_is_named(doc: Any, message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_plan(doc)
    assert message in caught.value.message
