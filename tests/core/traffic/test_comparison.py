"""Comparing a shadow's outputs with the primary's."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from inferd.core.traffic.comparison import Tolerance, compare
from inferd.types import Tensor

TOLERANCE = Tolerance(rtol=1e-4, atol=1e-5)


def fp32(name: str, rows: list[list[float]]) -> Tensor:
    return Tensor(name, "FP32", np.asarray(rows, dtype=np.float32))


def one(primary: Tensor, shadow: Tensor | None) -> Any:
    answered = {} if shadow is None else {shadow.name: shadow}
    return compare([primary], answered, TOLERANCE)


def test_identical_outputs_agree_with_zero_differences() -> None:
    result = one(fp32("y", [[1, 2], [3, 0]]), fp32("y", [[1, 2], [3, 0]]))
    assert result.reason is None
    diff = result.outputs[0]
    assert (diff.max_abs, diff.max_rel, diff.argmax_agreement) == (0.0, 0.0, 1.0)


def test_differences_are_the_largest_absolute_and_relative() -> None:
    result = one(fp32("y", [[1.0, 4.0]]), fp32("y", [[1.5, 4.2]]))
    diff = result.outputs[0]
    assert diff.max_abs == pytest.approx(0.5)
    assert diff.max_rel == pytest.approx(0.5 / 1.5)
    assert (diff.argmax_agreement, diff.reason, result.reason) == (1.0, "values", "values")


def test_differences_within_the_tolerance_agree() -> None:
    result = one(fp32("y", [[1000.0, 1.0]]), fp32("y", [[1000.05, 1.0]]))
    assert result.reason is None
    assert result.outputs[0].max_abs == pytest.approx(0.05, rel=1e-3)


def test_a_row_whose_argmax_differs_is_an_argmax_disagreement() -> None:
    primary = fp32("y", [[0.9, 0.1], [0.2, 0.8]])
    shadow = fp32("y", [[0.9, 0.1], [0.6, 0.4]])
    result = one(primary, shadow)
    assert (result.reason, result.outputs[0].argmax_agreement) == ("argmax", 0.5)


def test_one_column_and_1d_outputs_have_no_argmax() -> None:
    assert (
        one(fp32("y", [[1.0], [2.0]]), fp32("y", [[1.0], [2.0]])).outputs[0].argmax_agreement
        is None
    )
    flat = Tensor("y", "FP32", np.asarray([1.0, 2.0], dtype=np.float32))
    assert one(flat, flat).outputs[0].argmax_agreement is None


@pytest.mark.parametrize(
    ("shadow", "reason", "detail"),
    [
        (None, "output", "the shadow version has no such output"),
        (Tensor("y", "FP64", np.zeros((1, 2))), "datatype", "primary FP32, shadow FP64"),
        (fp32("y", [[0, 0, 0]]), "shape", "primary [1, 2], shadow [1, 3]"),
    ],
)
def test_what_cannot_be_compared_disagrees(shadow: Tensor | None, reason: str, detail: str) -> None:
    result = one(fp32("y", [[0, 0]]), shadow)
    assert (result.reason, result.outputs[0].detail, result.outputs[0].max_abs) == (
        reason,
        detail,
        None,
    )


def test_nan_equals_nan_and_differs_infinitely_from_a_number() -> None:
    nan, inf = math.nan, math.inf
    assert one(fp32("y", [[nan, inf]]), fp32("y", [[nan, inf]])).reason is None
    result = one(fp32("y", [[nan, 1.0]]), fp32("y", [[1.0, 1.0]]))
    assert (result.reason, result.outputs[0].max_abs, result.outputs[0].max_rel) == (
        "values",
        inf,
        inf,
    )
    against_infinity = one(fp32("y", [[inf, 0.0]]), fp32("y", [[-inf, 0.0]])).outputs[0]
    assert (against_infinity.max_abs, against_infinity.max_rel) == (inf, inf)


def test_bytes_outputs_compare_element_for_element() -> None:
    def text(*values: bytes) -> Tensor:
        return Tensor("t", "BYTES", np.asarray(values, dtype=object))

    assert one(text(b"a", b"b"), text(b"a", b"b")).reason is None
    result = one(text(b"a", b"b"), text(b"a", b"c"))
    assert (result.reason, result.outputs[0].max_abs) == ("values", None)


def test_integer_outputs_differ_by_any_step() -> None:
    labels = Tensor("k", "INT64", np.asarray([3, 7], dtype=np.int64))
    other = Tensor("k", "INT64", np.asarray([3, 8], dtype=np.int64))
    assert one(labels, other).outputs[0].max_abs == 1.0
    assert one(labels, other).reason == "values"


def test_a_request_reports_its_most_telling_reason() -> None:
    primary = [fp32("a", [[1, 0]]), fp32("b", [[0, 1]]), fp32("c", [[1, 1]])]
    shadow = {
        "a": fp32("a", [[1.5, 0]]),  # values
        "b": fp32("b", [[1, 0]]),  # argmax
        "c": fp32("c", [[1, 1, 1]]),  # shape
    }
    result = compare(primary, shadow, TOLERANCE)
    assert [o.reason for o in result.outputs] == ["values", "argmax", "shape"]
    assert result.reason == "shape"


def test_only_the_primarys_outputs_are_compared() -> None:
    shadow = {"y": fp32("y", [[1, 2]]), "extra": fp32("extra", [[5, 5]])}
    result = compare([fp32("y", [[1, 2]])], shadow, TOLERANCE)
    assert [o.name for o in result.outputs] == ["y"]
    assert result.reason is None
