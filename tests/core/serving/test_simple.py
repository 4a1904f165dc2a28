"""The simple API's rows: shapes checked against the declared input, flat rows, BYTES."""

from __future__ import annotations

import numpy as np
import pytest

from inferd.core.serving.simple import predictions, simple_array
from inferd.errors import InvalidArgument
from inferd.types import TensorSpec

GRID = TensorSpec("x", "FP32", (-1, 2, 3))
ROW = [[1, 2, 3], [4, 5, 6]]


def test_one_row_of_several_dimensions_gets_a_batch_dimension() -> None:
    array = simple_array("grid", GRID, True, ROW, batched=False)
    assert array.shape == (1, 2, 3)
    assert array.dtype == np.float32
    np.testing.assert_array_equal(array[0], ROW)


def test_a_batch_of_rows() -> None:
    array = simple_array("grid", GRID, True, [ROW, ROW, ROW], batched=True)
    assert array.shape == (3, 2, 3)


@pytest.mark.parametrize(
    ("data", "batched", "message"),
    [
        (
            [1, 2, 3],
            False,
            "'inputs' must be one row of shape [2, 3] (input 'x' of model 'grid' is "
            "[-1, 2, 3]); got shape [3]; send several rows as 'batch'",
        ),
        ([ROW], False, "got shape [1, 2, 3]; send several rows as 'batch'"),
        (
            ROW,
            True,
            "'batch' must be a list of rows of shape [2, 3] (input 'x' of model 'grid' is "
            "[-1, 2, 3]); got shape [2, 3]",
        ),
        ([[[1, 2], [3, 4]]], True, "got shape [1, 2, 2]"),
    ],
)
def test_shapes_are_checked_against_the_declaration(
    data: object, batched: bool, message: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        simple_array("grid", GRID, True, data, batched=batched)
    assert message in caught.value.message


def test_variable_dimensions_take_any_size() -> None:
    spec = TensorSpec("x", "INT64", (-1, -1, 2))
    assert simple_array("m", spec, True, [[1, 2]] * 5, batched=False).shape == (1, 5, 2)


def test_a_model_that_does_not_batch_takes_its_whole_shape() -> None:
    spec = TensorSpec("x", "FP32", (2, 3))
    assert simple_array("m", spec, False, ROW, batched=False).shape == (2, 3)
    with pytest.raises(InvalidArgument, match=r"does not batch \(max_batch_size 0\)"):
        simple_array("m", spec, False, [ROW], batched=True)


def test_a_flat_row_is_shaped_as_the_declared_row() -> None:
    array = simple_array("grid", GRID, True, [1, 2, 3, 4, 5, 6], batched=False, flat=True)
    np.testing.assert_array_equal(array, [ROW])
    with pytest.raises(InvalidArgument, match=r"5 values do not make one row of shape \[2, 3\]"):
        simple_array("grid", GRID, True, [1, 2, 3, 4, 5], batched=False, flat=True)
    loose = TensorSpec("x", "FP32", (-1, -1, -1))
    with pytest.raises(InvalidArgument, match="a flat row cannot be shaped"):
        simple_array("m", loose, True, [1, 2], batched=False, flat=True)


def test_bytes_rows_are_strings() -> None:
    text = TensorSpec("text", "BYTES", (-1,))
    one = simple_array("s", text, True, "héllo", batched=False)
    assert one.dtype == object
    assert one.tolist() == ["héllo".encode()]
    assert simple_array("s", text, True, ["a", "b"], batched=True).tolist() == [b"a", b"b"]
    with pytest.raises(InvalidArgument, match="BYTES data must be strings"):
        simple_array("s", text, True, [1], batched=True)


def test_bytes_predictions_are_text() -> None:
    out = np.array([b'{"a":1}', b"x"], dtype=object)
    assert predictions(out, "BYTES") == ['{"a":1}', "x"]
    assert predictions(np.array([1.5], dtype=np.float32), "FP32") == [1.5]
    with pytest.raises(InvalidArgument, match="not UTF-8"):
        predictions(np.array([b"\xff"], dtype=object), "BYTES")
