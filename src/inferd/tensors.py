"""Tensor codecs: JSON ``data``, the binary tensor extension and raw protobuf contents
to numpy and back. Conversions run once, at the edge, with numpy doing the element work.

Decoding is split in two. The header (name, datatype, shape, and the size arithmetic that
needs nothing but lengths) is checked at once; the elements are decoded later, by
:meth:`WireTensor.decode`, after the core compared the header with the model's
declaration. So a request that claims a huge shape, or sends megabytes of the wrong
datatype, is refused before any element is touched.

JSON is strict: numbers for the FP types (no ``true``/``false``), integers for the INT and
UINT types (no ``1.0``), ``true``/``false`` for BOOL, strings for BYTES. ``data`` is flat
(row-major) or nested exactly as the declared shape.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, Final

import numpy as np

from inferd.errors import InvalidArgument, clip
from inferd.jsondata import MAX_DIMS, JsonData, cast, flat_numbers, read
from inferd.types import DATATYPE_TO_NUMPY, WIRE_ITEMSIZE

#: Most elements a shape may describe, zero dimensions counted as one: numpy cannot even
#: describe an empty array whose other dimensions multiply past its index range.
MAX_SHAPE_ELEMENTS: Final = 2**48

_LE: Final[dict[str, np.dtype[Any]]] = {
    name: dtype.newbyteorder("<")
    for name, dtype in DATATYPE_TO_NUMPY.items()
    if name not in ("BYTES", "BF16")
}


@dataclasses.dataclass(slots=True)
class WireTensor:
    """An input as it came off the wire: its header checked, its elements not decoded.

    ``cost`` is about how much Python work ``decode`` does (elements or bytes touched one
    by one; 0 when numpy only reinterprets a buffer), so the core can decide where to run it.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    decoder: Callable[[], np.ndarray[Any, Any]]
    cost: int = 0
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def declared_shape(self) -> tuple[int, ...]:
        return self.shape

    def decode(self) -> np.ndarray[Any, Any]:
        return self.decoder()


def check_datatype(name: str, datatype: object) -> str:
    if datatype is None or datatype == "":  # left out (JSON) or empty (protobuf's default)
        raise InvalidArgument(
            f"input '{clip(name)}': datatype is required; one of {', '.join(DATATYPE_TO_NUMPY)}"
        )
    if not isinstance(datatype, str) or datatype not in DATATYPE_TO_NUMPY:
        raise InvalidArgument(
            f"input '{clip(name)}': unknown datatype {clip(repr(datatype))}; expected one of "
            f"{', '.join(DATATYPE_TO_NUMPY)}"
        )
    return datatype


def check_shape(name: str, shape: object) -> tuple[int, ...]:
    """A shape is a list of non-negative integers (JSON booleans are not integers) that
    numpy can describe."""
    if not isinstance(shape, list | tuple) or len(shape) > MAX_DIMS:
        raise InvalidArgument(
            f"input '{clip(name)}': shape must be a list of at most {MAX_DIMS} non-negative "
            f"integers, got {clip(repr(shape))}"
        )
    elements = 1  # zero dimensions counted as one
    for dim in shape:
        if type(dim) is not int or dim < 0:
            raise InvalidArgument(
                f"input '{clip(name)}': shape must hold non-negative integers, "
                f"got {clip(repr(list(shape)))}"
            )
        elements *= dim or 1
    if elements > MAX_SHAPE_ELEMENTS:
        raise InvalidArgument(
            f"input '{clip(name)}': shape {clip(repr(list(shape)))} is too large "
            f"(its dimensions may multiply to at most {MAX_SHAPE_ELEMENTS})"
        )
    return tuple(shape)


def element_count(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


# -- JSON ------------------------------------------------------------------------------------


def json_tensor(
    name: str, datatype: str, shape: tuple[int, ...], data: list[Any] | JsonData
) -> WireTensor:
    """A V2 JSON input: ``data`` as parsed, or already read (``jsondata.read``)."""
    count = math.prod(shape)
    if isinstance(data, list):
        flat = len(data) if not data or not isinstance(data[0], list) else None
        cost = count
    elif isinstance(data, JsonData):
        flat = None if data.nested else data.count
        cost = count if datatype == "BYTES" else 0  # read already: numpy casts only
    else:
        raise InvalidArgument(
            f"input '{clip(name)}': 'data' must be a list, got {type(data).__name__}"
        )
    if flat is not None and flat != count:
        raise InvalidArgument(
            f"input '{clip(name)}': shape {list(shape)} needs {count} elements, 'data' has {flat}"
        )
    return WireTensor(
        name, datatype, shape, lambda: from_json(name, datatype, shape, data), cost=cost
    )


def from_json(
    name: str, datatype: str, shape: tuple[int, ...], data: list[Any] | JsonData
) -> np.ndarray[Any, Any]:
    """Decode a V2 JSON ``data`` field (flat or nested as ``shape``, row-major)."""
    if not isinstance(data, list | JsonData):
        raise InvalidArgument(
            f"input '{clip(name)}': 'data' must be a list, got {type(data).__name__}"
        )
    if isinstance(data, JsonData):
        return _cast(name, datatype, shape, data)
    flat = flat_numbers(datatype, element_count(shape), data)
    if flat is not None:
        return flat.reshape(shape)
    return _cast(name, datatype, shape, read(data))


def _cast(name: str, datatype: str, shape: tuple[int, ...], data: JsonData) -> np.ndarray[Any, Any]:
    out = cast(name, datatype, shape, data)
    return round_to_bf16(out) if datatype == "BF16" else out


#: The types of a flat row of numbers as parsed JSON gives them.
_NUMBERS: Final = frozenset({float, int})


def auto_tensor(name: str, datatype: str, data: list[Any] | JsonData) -> WireTensor:
    """JSON values whose shape is given by their nesting (the simple API). The usual one,
    a flat row of numbers, is shaped by its length and decoded as a V2 input's flat data
    (one numpy call when it can be); anything else is read now, for its shape."""
    if isinstance(data, list) and data and set(map(type, data)) <= _NUMBERS:
        shape = (len(data),)
        values = data
        return WireTensor(
            name, datatype, shape, lambda: from_json(name, datatype, shape, values), cost=len(data)
        )
    if isinstance(data, list) and data:
        data = read(data)  # the shape is needed now
    if not isinstance(data, JsonData) or not data.count:
        raise InvalidArgument(f"input '{clip(name)}': expected a non-empty list of numbers")
    if data.problem:
        raise InvalidArgument(f"input '{clip(name)}': 'data' {data.problem}")
    read_data = data
    cost = data.count if datatype == "BYTES" else 0
    return WireTensor(
        name,
        datatype,
        data.shape,
        lambda: _cast(name, datatype, read_data.shape, read_data),
        cost=cost,
    )


# -- binary ----------------------------------------------------------------------------------


def binary_tensor(
    name: str, datatype: str, shape: tuple[int, ...], buffer: bytes | memoryview
) -> WireTensor:
    """Raw little-endian tensor bytes (binary extension, gRPC raw contents); the size
    arithmetic is checked here, the elements when decoded."""
    check_binary_size(name, datatype, shape, len(buffer))
    cost = len(buffer) if datatype == "BYTES" else 0
    return WireTensor(
        name, datatype, shape, lambda: from_binary(name, datatype, shape, buffer), cost=cost
    )


def check_binary_size(name: str, datatype: str, shape: tuple[int, ...], size: int) -> None:
    count = element_count(shape)
    if datatype == "BYTES":
        # Each element takes at least its 4-byte length.
        if count * 4 > size:
            raise InvalidArgument(
                f"input '{clip(name)}': BYTES shape {list(shape)} needs at least {count * 4} "
                f"bytes, got {size}"
            )
        return
    expected = count * WIRE_ITEMSIZE[datatype]
    if size != expected:
        raise InvalidArgument(
            f"input '{clip(name)}': {datatype} shape {list(shape)} needs {expected} bytes, "
            f"got {size}"
        )


def from_binary(
    name: str, datatype: str, shape: tuple[int, ...], buffer: bytes | memoryview
) -> np.ndarray[Any, Any]:
    """Decode raw little-endian tensor bytes (binary extension, gRPC raw contents)."""
    check_binary_size(name, datatype, shape, len(buffer))
    if datatype == "BYTES":
        return _bytes_from_binary(name, shape, buffer, element_count(shape))
    if datatype == "BF16":
        words = np.frombuffer(buffer, dtype="<u2").astype(np.uint32) << 16
        return words.view(np.float32).reshape(shape)
    if datatype == "BOOL":
        raw = np.frombuffer(buffer, dtype=np.uint8)
        if raw.size and raw.max() > 1:
            raise InvalidArgument(f"input '{clip(name)}': BOOL bytes must be 0 or 1")
        return raw.view(np.bool_).reshape(shape)
    return np.frombuffer(buffer, dtype=_LE[datatype]).reshape(shape)


def _bytes_from_binary(
    name: str, shape: tuple[int, ...], buffer: bytes | memoryview, count: int
) -> np.ndarray[Any, Any]:
    view = memoryview(buffer)
    # Filled through a flat view: the array returned owns its elements, so that
    # core.validation.release_inputs may free them a slice at a time.
    shaped = np.empty(shape, dtype=object)
    out = shaped.reshape(-1)
    offset = 0
    for i in range(count):
        if offset + 4 > len(view):
            raise InvalidArgument(f"input '{clip(name)}': BYTES data ends inside element {i}")
        length = int.from_bytes(view[offset : offset + 4], "little")
        offset += 4
        if offset + length > len(view):
            raise InvalidArgument(f"input '{clip(name)}': BYTES element {i} overruns the buffer")
        out[i] = bytes(view[offset : offset + length])
        offset += length
    if offset != len(view):
        raise InvalidArgument(
            f"input '{clip(name)}': {len(view) - offset} bytes left over after {count} BYTES "
            "elements"
        )
    return shaped


# -- outputs ---------------------------------------------------------------------------------

#: How JSON writes the values it has no number for (the protobuf JSON mapping's names).
NONFINITE_JSON: Final = (("NaN", np.isnan), ("Infinity", np.isposinf), ("-Infinity", np.isneginf))


def to_json_data(name: str, datatype: str, array: np.ndarray[Any, Any]) -> list[Any]:
    """Flatten an output to the V2 JSON ``data`` list (row-major)."""
    if datatype == "BYTES":
        try:
            return [
                item.decode() if isinstance(item, bytes) else str(item)
                for item in array.reshape(-1)
            ]
        except UnicodeDecodeError as exc:
            raise InvalidArgument(
                f"output '{clip(name)}' holds bytes that are not UTF-8; request it as binary data"
            ) from exc
    return json_values(array.reshape(-1))


#: Up to this many elements, :func:`all_finite` tests them in Python (cheaper than two
#: numpy calls for a small array).
_SMALL: Final = 16


def all_finite(array: np.ndarray[Any, Any]) -> bool:
    """No NaN or Inf in a floating-point ``array``."""
    if array.size <= _SMALL:
        return all(map(math.isfinite, array.ravel().tolist()))
    return bool(np.isfinite(array).all())


def json_values(array: np.ndarray[Any, Any]) -> list[Any]:
    """``array.tolist()``, with NaN and Inf as the strings JSON has for them ("NaN",
    "Infinity", "-Infinity", as in the protobuf JSON mapping) instead of ``null``."""
    listed: list[Any] = array.tolist()
    if array.dtype.kind != "f":
        return listed
    if array.ndim == 1 and array.size <= _SMALL:
        finite = all(map(math.isfinite, listed))  # the list made anyway, read once
    else:
        finite = all_finite(array)
    if finite:
        return listed
    values = array.astype(object)
    for text, test in NONFINITE_JSON:
        values[test(array)] = text
    named: list[Any] = values.tolist()
    return named


def to_binary(datatype: str, array: np.ndarray[Any, Any]) -> bytes:
    """Encode an output as raw little-endian bytes (BYTES: 4-byte length + bytes)."""
    if datatype == "BYTES":
        parts: list[bytes] = []
        for item in array.reshape(-1):
            raw = item if isinstance(item, bytes) else str(item).encode()
            parts.append(len(raw).to_bytes(4, "little"))
            parts.append(raw)
        return b"".join(parts)
    if datatype == "BF16":
        return bf16_words(array).tobytes()
    return np.ascontiguousarray(array, dtype=_LE[datatype]).tobytes()


def bf16_words(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """float32 -> bfloat16 bit patterns, rounding to nearest even."""
    bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    return rounded.astype("<u2")


def round_to_bf16(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The float32 values that bfloat16 can hold, nearest-even."""
    return (bf16_words(array).astype(np.uint32) << np.uint32(16)).view(np.float32)


def as_datatype(array: np.ndarray[Any, Any], datatype: str) -> np.ndarray[Any, Any]:
    """``array`` in the numpy type of V2 ``datatype`` (BF16: float32 rounded to what bfloat16
    holds; BYTES as it is)."""
    target = DATATYPE_TO_NUMPY[datatype]
    if datatype == "BF16":
        return round_to_bf16(array)
    if array.dtype != target and datatype != "BYTES":
        return array.astype(target)
    return array
