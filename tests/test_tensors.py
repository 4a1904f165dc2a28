import re
from typing import Any

import numpy as np
import pytest

from inferd.errors import MESSAGE_LIMIT, InvalidArgument
from inferd.jsondata import read
from inferd.tensors import (
    all_finite,
    auto_tensor,
    bf16_words,
    binary_tensor,
    check_datatype,
    check_shape,
    from_binary,
    from_json,
    json_tensor,
    json_values,
    round_to_bf16,
    to_binary,
    to_json_data,
)

SAMPLES: dict[str, list[object]] = {
    "BOOL": [True, False, True, True, False, False],
    "UINT8": [0, 1, 2, 127, 200, 255],
    "UINT16": [0, 1, 65535, 3, 4, 5],
    "UINT32": [0, 1, 2**32 - 1, 3, 4, 5],
    "UINT64": [0, 1, 2**64 - 1, 3, 4, 5],
    "INT8": [-128, -1, 0, 1, 2, 127],
    "INT16": [-32768, -1, 0, 1, 2, 32767],
    "INT32": [-(2**31), -1, 0, 1, 2, 2**31 - 1],
    "INT64": [-(2**63), -1, 0, 1, 2, 2**63 - 1],
    "FP16": [-1.5, 0.0, 0.25, 1.0, 2.0, 65504.0],
    "FP32": [-1.5, 0.0, 0.125, 1.0, 2.0, 2.0**100],
    "FP64": [-1.5, 0.0, 0.1, 1.0, 2.0, 1e300],
    "BF16": [-1.5, 0.0, 0.5, 1.0, 2.0, 256.0],
    "BYTES": ["a", "", "héllo", "x" * 300, "0", "z"],
}


@pytest.mark.parametrize("datatype", sorted(SAMPLES))
def test_json_round_trip(datatype: str) -> None:
    data = SAMPLES[datatype]
    array = from_json("x", datatype, (2, 3), data)
    assert array.shape == (2, 3)
    assert to_json_data("x", datatype, array) == data


@pytest.mark.parametrize("datatype", sorted(SAMPLES))
def test_nested_json_equals_flat(datatype: str) -> None:
    data = SAMPLES[datatype]
    nested = [data[:3], data[3:]]
    flat = from_json("x", datatype, (2, 3), data)
    assert np.array_equal(from_json("x", datatype, (2, 3), nested), flat)


@pytest.mark.parametrize("datatype", sorted(SAMPLES))
def test_binary_round_trip(datatype: str) -> None:
    array = from_json("x", datatype, (2, 3), SAMPLES[datatype])
    raw = to_binary(datatype, array)
    back = from_binary("x", datatype, (2, 3), raw)
    assert back.shape == (2, 3)
    assert to_json_data("x", datatype, back) == SAMPLES[datatype]


def test_binary_layout_is_little_endian() -> None:
    assert to_binary("INT32", np.array([1], dtype=np.int32)) == b"\x01\x00\x00\x00"
    assert to_binary("BYTES", np.array([b"ab"], dtype=object)) == b"\x02\x00\x00\x00ab"
    assert to_binary("BF16", np.array([1.0], dtype=np.float32)) == b"\x80\x3f"


def test_bf16_rounds_to_nearest_even() -> None:
    values = np.array([1.0 + 2**-8, 1.0 + 3 * 2**-8, -2.5], dtype=np.float32)
    assert round_to_bf16(values).tolist() == [1.0, 1.015625, -2.5]
    assert bf16_words(np.array([1.0], dtype=np.float32)).tolist() == [0x3F80]


def test_empty_tensor() -> None:
    array = from_json("x", "FP32", (0, 4), [])
    assert array.shape == (0, 4)
    assert from_binary("x", "FP32", (0, 4), b"").shape == (0, 4)


@pytest.mark.parametrize(
    ("datatype", "shape", "data", "message"),
    [
        ("FP32", (2, 2), [1, 2, 3], "needs 4 elements"),
        ("FP32", (10**12,), [1.0], "needs 1000000000000 elements"),
        ("FP32", (2,), [1, "a"], "must be numbers"),
        ("FP32", (2,), [[1], [2, 3]], "its rows differ at depth 1"),
        ("INT32", (2,), [1.5, 2], "must be integers"),
        ("INT8", (1,), [300], "out of range"),
        ("UINT8", (1,), [-1], "out of range"),
        ("INT64", (1,), [2**70], "out of range"),
        ("INT32", (2,), [1, None], "must be integers"),
        ("BOOL", (2,), [1, 0], "true/false"),
        ("BYTES", (2,), ["a", 1], "must be strings"),
        ("BYTES", (3,), ["a", "b"], "needs 3 elements"),
        ("FP32", (1,), "1.0", "must be a list"),
    ],
)
def test_json_errors(datatype: str, shape: tuple[int, ...], data: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        from_json("x", datatype, shape, data)


@pytest.mark.parametrize(
    ("datatype", "shape", "raw", "message"),
    [
        ("FP32", (2,), b"\x00" * 7, "needs 8 bytes"),
        ("FP32", (10**15,), b"\x00" * 8, "needs 4000000000000000 bytes"),
        ("BOOL", (1,), b"\x02", "0 or 1"),
        ("BYTES", (2,), b"\x01\x00\x00\x00a", "needs at least 8 bytes"),
        ("BYTES", (1,), b"\x05\x00\x00\x00ab", "overruns"),
        ("BYTES", (1,), b"\x01\x00\x00\x00abc", "left over"),
        ("BYTES", (10**12,), b"", "needs at least"),
    ],
)
def test_binary_errors(datatype: str, shape: tuple[int, ...], raw: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        from_binary("x", datatype, shape, raw)


@pytest.mark.parametrize("shape", [[-1], [1.5], [True], "4", None, [1] * 33])
def test_bad_shapes(shape: object) -> None:
    with pytest.raises(InvalidArgument, match="shape"):
        check_shape("x", shape)


@pytest.mark.parametrize(
    ("datatype", "message"),
    [
        ("FP8", "unknown datatype"),
        ("fp32", "unknown datatype"),
        (3, "unknown datatype"),
        (None, "datatype is required"),
    ],
)
def test_bad_datatypes(datatype: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        check_datatype("x", datatype)


def test_non_utf8_bytes_cannot_go_to_json() -> None:
    with pytest.raises(InvalidArgument, match="binary"):
        to_json_data("y", "BYTES", np.array([b"\xff"], dtype=object))


@pytest.mark.parametrize(
    ("datatype", "shape", "data", "message"),
    [
        ("FP32", (4,), [True, 1, 2, 3], "FP32 data must be numbers"),
        ("INT32", (2,), [True, 1], "INT32 data must be integers"),
        ("INT64", (2,), [1.0, 2], "INT64 data must be integers"),
        ("BOOL", (2,), [True, 0], "BOOL data must be true/false values"),
        ("INT64", (2,), [-1, 18446744073709551615], "out of range for INT64"),
        ("UINT64", (2,), [-1, 18446744073709551615], "out of range for UINT64"),
        ("FP32", (1,), [10**400], "out of range for FP32"),
        ("FP32", (2, 2), [[1, 2], [3, [4]]], "is not a regular array: its rows differ at depth 2"),
        ("FP32", (2, 2), [[[1, 2]], [[3, 4]]], "'data' is nested as [2, 1, 2]; shape is [2, 2]"),
        ("FP32", (4,), [[1, 2], [3, 4]], "'data' is nested as [2, 2]; shape is [4]"),
        ("FP32", (2, 2), [[1, 2], 3, 4], "its rows differ at depth 1"),
    ],
)
def test_json_is_strict(datatype: str, shape: tuple[int, ...], data: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        from_json("x", datatype, shape, data)


def test_deep_nesting_costs_no_recursion() -> None:
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(InvalidArgument, match="nested deeper than 32 levels"):
        from_json("x", "BYTES", (1,), deep)
    with pytest.raises(InvalidArgument, match="nested deeper than 32 levels"):
        auto_tensor("x", "FP32", deep)


@pytest.mark.parametrize("shape", [[0, 2**62, 2**62], [0, 2**64 - 1], [2**49]])
def test_shapes_numpy_cannot_describe_are_refused(shape: list[int]) -> None:
    with pytest.raises(InvalidArgument, match="too large"):
        check_shape("x", shape)


def test_a_zero_element_shape_with_large_dimensions_decodes() -> None:
    shape = check_shape("x", [0, 2**24, 2**24])
    assert from_json("x", "FP32", shape, []).shape == (0, 2**24, 2**24)
    assert from_binary("x", "FP32", shape, b"").shape == (0, 2**24, 2**24)


def test_the_binary_header_is_checked_before_decoding() -> None:
    with pytest.raises(InvalidArgument, match="needs 16 bytes, got 15"):
        binary_tensor("x", "FP32", (4,), b"\0" * 15)
    tensor = binary_tensor("x", "BYTES", (2,), b"\x01\x00\x00\x00a" * 2)
    assert tensor.cost == 10
    assert tensor.decode().tolist() == [b"a", b"a"]
    with pytest.raises(InvalidArgument, match="needs 4 elements, 'data' has 3"):
        json_tensor("x", "FP32", (4,), [1, 2, 3])


def test_nonfinite_values_are_named_in_json() -> None:
    array = np.array([np.nan, np.inf, -np.inf, 1.5], dtype=np.float32)
    assert to_json_data("y", "FP32", array) == ["NaN", "Infinity", "-Infinity", 1.5]
    assert json_values(np.array([1, 2])) == [1, 2]


def test_echoed_strings_are_clipped() -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_datatype("n" * 10_000, "d" * 10_000)
    assert len(caught.value.message) < 300
    assert "n" * 64 + "\u2026" in caught.value.message
    assert len(InvalidArgument("m" * 100_000).message) == MESSAGE_LIMIT + 1


@pytest.mark.parametrize("size", [1, 16, 17, 1000])
@pytest.mark.parametrize("bad", [None, np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_all_finite_finds_nan_and_inf_small_or_large(
    size: int, bad: float | None, dtype: type[np.floating[Any]]
) -> None:
    array = np.ones((size, 1), dtype=dtype)
    if bad is not None:
        array[size // 2, 0] = bad
    assert all_finite(array) is (bad is None)


def test_json_values_keeps_the_nesting_of_a_small_array_and_names_nonfinite_values() -> None:
    assert json_values(np.array([[1.5, 2.0], [3.0, 4.0]], dtype=np.float32)) == [
        [1.5, 2.0],
        [3.0, 4.0],
    ]
    assert json_values(np.array([[1.0, np.nan], [np.inf, -np.inf]])) == [
        [1.0, "NaN"],
        ["Infinity", "-Infinity"],
    ]
    assert json_values(np.array([1.0, np.nan])) == [1.0, "NaN"]


def _decoded(make: Any) -> tuple[str, Any]:
    try:
        array = make().decode()
    except InvalidArgument as exc:
        return "refused", exc.message
    return str(array.dtype), array.tolist()


@pytest.mark.parametrize(
    "datatype", ["FP16", "FP32", "FP64", "INT8", "INT64", "UINT8", "BOOL", "BYTES", "BF16"]
)
@pytest.mark.parametrize(
    "row",
    [
        [1.5, -2.25, 3.0],
        [1, 2, 3],
        [1, 2.5],
        [300, -1],
        [2**63, 1],
        [2**70, 0.5],
        [1e300, -1e300],
        [0, 1],
    ],
)
def test_a_flat_row_decodes_as_the_general_reader_would(datatype: str, row: list[Any]) -> None:
    """The simple API's flat rows of numbers take a shorter path (one numpy call): the
    same arrays, or the same refusal, as reading them first."""
    fast = _decoded(lambda: auto_tensor("x", datatype, list(row)))
    general = _decoded(lambda: auto_tensor("x", datatype, read(list(row))))
    assert fast == general
    assert auto_tensor("x", datatype, list(row)).shape == (len(row),)
