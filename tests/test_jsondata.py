"""JSON tensor data: read once (nesting, element kinds, values), cast per datatype."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

from inferd.errors import InvalidArgument
from inferd.jsondata import SLICE, JsonData, cast, flat_numbers, read


def test_read_notes_shape_kinds_and_values() -> None:
    data = read([[1, 2, 3], [4, 5, 6]])
    assert (data.shape, data.problem, data.kinds) == ((2, 3), "", frozenset({"int"}))
    assert data.values is not None and data.values.dtype == np.uint8
    assert data.values.tolist() == [1, 2, 3, 4, 5, 6]
    mixed = read([1, 2.5, True])
    assert mixed.kinds == {"int", "float", "bool"} and mixed.values is None


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ([[1, 2], [3]], "is not a regular array: its rows differ at depth 1"),
        ([[1, 2], 3], "is not a regular array: its rows differ at depth 1"),
        ([1, [2]], "is not a regular array: its rows differ at depth 1"),
        ([[[1]], [[2, 3]]], "is not a regular array: its rows differ at depth 2"),
    ],
)
def test_read_names_irregular_nesting(data: list[object], problem: str) -> None:
    assert read(data).problem == problem


def test_integers_take_the_narrowest_integer_type_that_holds_them() -> None:
    assert read([0, 255]).values.dtype == np.uint8  # type: ignore[union-attr]
    assert read([-1, 127]).values.dtype == np.int8  # type: ignore[union-attr]
    assert read([-1, 255]).values.dtype == np.int16  # type: ignore[union-attr]
    assert read([0, 2**32 - 1]).values.dtype == np.uint32  # type: ignore[union-attr]
    assert read([-1, 2**63 - 1]).values.dtype == np.int64  # type: ignore[union-attr]
    assert read([0, 2**64 - 1]).values.dtype == np.uint64  # type: ignore[union-attr]
    beyond = read([-1, 2**64 - 1])
    assert beyond.beyond and beyond.values is not None and beyond.values.dtype == np.float64
    assert read([10**400]).values is None


def test_cast_is_the_same_for_read_data_passed_between_processes() -> None:
    data = pickle.loads(pickle.dumps(read([[1.5, 2], [3, 4]])))
    assert isinstance(data, JsonData)
    out = cast("x", "FP32", (2, 2), data)
    assert out.dtype == np.float32 and out.tolist() == [[1.5, 2.0], [3.0, 4.0]]
    assert cast("x", "FP32", (4,), read([1, 2, 3, 4])).shape == (4,)
    assert cast("x", "INT8", (1, 2), read([1, 2])).dtype == np.int8


def test_strings_are_read_into_one_buffer_and_cast_to_bytes() -> None:
    strings = ["", "a", "h\u00e9", *(f"s{i}" for i in range(2 * SLICE + 5))]
    data = pickle.loads(pickle.dumps(read(strings)))
    assert data.values is None and data.texts is not None
    assert data.texts.blob == "".join(strings).encode()
    out = cast("s", "BYTES", (len(strings),), data)
    assert out.dtype == object and out.tolist() == [s.encode() for s in strings]
    nested = cast("s", "BYTES", (2, 2), read([["a", "b"], ["c", "d"]]))
    assert nested.tolist() == [[b"a", b"b"], [b"c", b"d"]]
    assert cast("s", "BYTES", (0,), read([])).shape == (0,)


def test_strings_that_are_not_text_are_refused_when_cast() -> None:
    with pytest.raises(InvalidArgument, match="input 's': BYTES data is not valid text"):
        cast("s", "BYTES", (2,), read(["a", "\ud800"]))


@pytest.mark.parametrize(
    ("datatype", "data", "message"),
    [
        ("UINT64", [-1, 2**64 - 1], "value out of range for UINT64 [0, 18446744073709551615]"),
        ("INT8", [1, 128], "value out of range for INT8 [-128, 127]"),
        ("FP64", [10**400], "a value is out of range for FP64"),
        ("BYTES", ["a", 1], "BYTES data must be strings"),
        ("BOOL", [True, 1], "BOOL data must be true/false values"),
    ],
)
def test_cast_refuses(datatype: str, data: list[object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("[", r"\[")):
        cast("x", datatype, (len(data),), read(data))


def test_floats_past_a_type_range_are_infinite() -> None:
    assert np.isposinf(cast("x", "FP16", (1,), read([1e6]))).all()


#: (datatype, element count, data, whether the fast path takes it)
FLAT_CASES: list[tuple[str, int, list[Any], bool]] = [
    ("FP32", 4, [0.5, -1.25, 3.0, 1e300], True),
    ("FP32", 4, [0.1, 16777217.0, -3.4e38, 1e-46], True),  # rounded, none overflows
    ("FP16", 3, [65504.0, 0.1, -65519.0], True),
    ("FP32", 4, [1, 2.5, -3, 4], True),
    ("FP32", 4, [1, 2, 3, 2**62], True),
    ("FP32", 2, [2**64 + 1, 1.0], True),
    ("FP16", 2, [70000.0, 1.0], True),
    ("FP64", 4, [1, 2**60, 3, 0.1], True),
    ("INT8", 3, [1, -128, 127], True),
    ("INT8", 2, [1, 300], False),
    ("UINT8", 2, [0, -1], False),
    ("UINT64", 2, [2**64 - 1, 0], True),
    ("INT64", 2, [2**63, 0], False),
    ("INT32", 2, [1.0, 2], False),
    ("FP32", 2, [True, 1.0], False),
    ("FP32", 4, [[1.0, 2.0], [3.0, 4.0]], False),
    ("FP32", 2, [1.0, "2"], False),
    ("BOOL", 2, [True, False], False),
    ("BF16", 2, [1.0, 2.0], False),
    ("FP32", 2, [1.0, 2.0, 3.0], False),
]


@pytest.mark.parametrize(("datatype", "count", "data", "fast"), FLAT_CASES)
def test_the_flat_fast_path_answers_as_the_general_reader_does(
    datatype: str, count: int, data: list[Any], fast: bool
) -> None:
    """flat_numbers decodes what it takes exactly as read() and cast() do, and leaves the
    rest (nested, other kinds, out of range, a wrong count) to them."""
    quick = flat_numbers(datatype, count, data)
    assert (quick is not None) == fast
    if quick is None:
        return
    shape = (count,) if not isinstance(data[0], list) else (2, 2)
    general = cast("x", datatype, shape, read(data))
    assert quick.dtype == general.dtype
    np.testing.assert_array_equal(quick, general.reshape(-1))
