"""A guarded rollout's plan: the body of ``PUT /v2/models/{model}/rollout``, checked field
by field (each field's rule is one row of :data:`FIELDS`)."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable
from typing import Any, Final

from inferd.core.store.repository import check_name
from inferd.errors import InvalidArgument, clip

#: Most seconds one step may last.
MAX_STEP_INTERVAL_S: Final = 86_400.0
#: Fewest seconds one step may last (the controller checks several times a step).
MIN_STEP_INTERVAL_S: Final = 0.01
MAX_P99_RATIO: Final = 1000.0
MAX_MIN_REQUESTS: Final = 1_000_000_000


@dataclasses.dataclass(frozen=True, slots=True)
class RolloutPlan:
    #: The version to roll out (the canary).
    to: str
    #: The canary's share of the split at each step, in percent; increasing, ending at 100.
    steps: tuple[int, ...] = (5, 25, 50, 100)
    step_interval_s: float = 60.0
    #: Most the canary's error rate may exceed the stable's (0.01: one point).
    max_error_rate: float = 0.01
    #: Most the canary's p99 latency may be, as a multiple of the stable's.
    max_p99_ratio: float = 1.5
    #: Requests each version must have answered in a step's window before it is judged.
    min_requests: int = 200

    def as_dict(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["steps"] = list(self.steps)
        return doc


def _field(name: str, expected: str, value: object) -> InvalidArgument:
    return InvalidArgument(f"rollout field '{name}' must be {expected}, got {clip(value)}")


def _number(name: str, value: object, low: float, high: float) -> float:
    # bool is an int to Python, not a number to a client.
    number = math.nan
    if type(value) in (int, float):
        with contextlib.suppress(OverflowError):  # an integer past float's range
            number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number) or not low <= number <= high:
        raise _field(name, f"a number from {low:g} to {high:g}", value)
    return number


def _to(value: object) -> str:
    if not isinstance(value, str):
        raise _field("to", 'a version name (a string, e.g. "2")', value)
    return check_name("version", value)


def _steps(value: object) -> tuple[int, ...]:
    expected = "a list of integer percentages that increase from 1 up to 100, e.g. [5, 25, 50, 100]"
    if not isinstance(value, list) or len(value) < 2:
        raise _field("steps", expected + " (at least one step below 100)", value)
    previous = 0
    for step in value:
        if type(step) is not int or not previous < step <= 100:
            raise _field("steps", expected, value)
        previous = step
    if previous != 100:
        raise _field("steps", expected + " (the last step is 100)", value)
    return tuple(value)


def _interval(value: object) -> float:
    return _number("step_interval_s", value, MIN_STEP_INTERVAL_S, MAX_STEP_INTERVAL_S)


def _error_rate(value: object) -> float:
    return _number("max_error_rate", value, 0.0, 1.0)


def _p99_ratio(value: object) -> float:
    return _number("max_p99_ratio", value, 1.0, MAX_P99_RATIO)


def _min_requests(value: object) -> int:
    if type(value) is not int or not 1 <= value <= MAX_MIN_REQUESTS:
        raise _field("min_requests", f"an integer from 1 to {MAX_MIN_REQUESTS}", value)
    return value


#: Field -> its check (which returns the field's value).
FIELDS: Final[dict[str, Callable[[object], Any]]] = {
    "to": _to,
    "steps": _steps,
    "step_interval_s": _interval,
    "max_error_rate": _error_rate,
    "max_p99_ratio": _p99_ratio,
    "min_requests": _min_requests,
}


def parse_plan(doc: object) -> RolloutPlan:
    """The plan a request body (decoded JSON) describes; ``to`` is required, the other
    fields default to :class:`RolloutPlan`'s. Raises :class:`InvalidArgument` naming the
    first bad field."""
    if not isinstance(doc, dict):
        raise InvalidArgument(
            'a rollout is a JSON object, e.g. {"to": "2", "steps": [5, 25, 50, 100]}'
        )
    unknown = [key for key in doc if key not in FIELDS]
    if unknown:
        raise InvalidArgument(
            f"unknown rollout field {clip(repr(unknown[0]))}; the fields are {list(FIELDS)}"
        )
    if "to" not in doc:
        raise InvalidArgument("rollout field 'to' is required: the version to roll out")
    return RolloutPlan(**{name: FIELDS[name](value) for name, value in doc.items()})
