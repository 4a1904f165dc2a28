"""Tensor codecs: JSON ``data``, the binary tensor extension and raw protobuf contents
to numpy and back. Conversions run once, at the edge, with numpy doing the element work.

Every decoder checks the declared shape against the data it was given *before* it
allocates anything proportional to the declared shape, so a request that claims a huge
shape costs nothing.
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np

from inferd.errors import InvalidArgument
from inferd.types import DATATYPE_TO_NUMPY, WIRE_ITEMSIZE

MAX_DIMS: Final = 32

_INT_KINDS: Final = frozenset("iu")
_LE: Final[dict[str, np.dtype[Any]]] = {
    name: dtype.newbyteorder("<")
    for name, dtype in DATATYPE_TO_NUMPY.items()
    if name not in ("BYTES", "BF16")
}
_BYTES_PREFIX: Final = np.dtype("<u4")


def check_datatype(name: str, datatype: object) -> str:
    if not isinstance(datatype, str) or datatype not in DATATYPE_TO_NUMPY:
        raise InvalidArgument(
            f"input '{name}': unknown datatype {datatype!r}; expected one of "
            f"{', '.join(DATATYPE_TO_NUMPY)}"
        )
    return datatype


def check_shape(name: str, shape: object) -> tuple[int, ...]:
    """A shape is a list of non-negative integers (JSON booleans are not integers)."""
    if not isinstance(shape, list | tuple) or len(shape) > MAX_DIMS:
        raise InvalidArgument(
            f"input '{name}': shape must be a list of at most {MAX_DIMS} non-negative "
            f"integers, got {shape!r}"
        )
    for dim in shape:
        if type(dim) is not int or dim < 0:
            raise InvalidArgument(
                f"input '{name}': shape must hold non-negative integers, got {list(shape)}"
            )
    return tuple(shape)


def element_count(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def _flat_len(data: Any) -> int:
    """Number of leaves of nested lists, counted without building anything."""
    if isinstance(data, list) and data and isinstance(data[0], list):
        return sum(_flat_len(item) for item in data)
    return len(data) if isinstance(data, list) else 1


def from_json(name: str, datatype: str, shape: tuple[int, ...], data: Any) -> np.ndarray[Any, Any]:
    """Decode a V2 JSON ``data`` field (flat or nested, row-major) into an array."""
    if not isinstance(data, list):
        raise InvalidArgument(f"input '{name}': 'data' must be a list, got {type(data).__name__}")
    count = element_count(shape)
    if datatype == "BYTES":
        return _bytes_from_json(name, shape, data, count)
    try:
        array = np.asarray(data)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"input '{name}': 'data' is not a regular array: {exc}") from exc
    if array.size != count:
        raise InvalidArgument(
            f"input '{name}': shape {list(shape)} needs {count} elements, 'data' has "
            f"{_flat_len(data) if array.dtype == object else array.size}"
        )
    return _cast_json_array(name, datatype, array, data).reshape(shape)


def _cast_json_array(
    name: str, datatype: str, array: np.ndarray[Any, Any], data: Any
) -> np.ndarray[Any, Any]:
    kind = array.dtype.kind
    target = DATATYPE_TO_NUMPY[datatype]
    if array.size == 0:
        return array.astype(target)
    if datatype == "BOOL":
        if kind != "b":
            raise InvalidArgument(f"input '{name}': BOOL data must be true/false values")
        return array
    if target.kind in _INT_KINDS:
        if kind not in _INT_KINDS:
            array = _python_ints(name, datatype, data).reshape(array.shape)
        info = np.iinfo(target)
        if array.min() < info.min or array.max() > info.max:
            raise InvalidArgument(
                f"input '{name}': value out of range for {datatype} [{info.min}, {info.max}]"
            )
        return array.astype(target)
    if kind not in "iuf":
        raise InvalidArgument(f"input '{name}': {datatype} data must be numbers")
    out = array.astype(target)
    if datatype == "BF16":
        out = round_to_bf16(out)
    return out


def _python_ints(name: str, datatype: str, data: Any) -> np.ndarray[Any, Any]:
    """Integers numpy could not type on its own (uint64 beside small ints turns float)."""
    items = _flatten(data) if isinstance(data, list) else [data]
    if not all(type(v) is int for v in items):
        raise InvalidArgument(f"input '{name}': {datatype} data must be integers")
    if not items or min(items) < 0:
        return np.array(items, dtype=np.int64)
    if max(items) > np.iinfo(np.uint64).max:
        raise InvalidArgument(f"input '{name}': value out of range for {datatype}")
    return np.array(items, dtype=np.uint64)


def _bytes_from_json(
    name: str, shape: tuple[int, ...], data: list[Any], count: int
) -> np.ndarray[Any, Any]:
    flat = _flatten(data)
    if len(flat) != count:
        raise InvalidArgument(
            f"input '{name}': shape {list(shape)} needs {count} elements, 'data' has {len(flat)}"
        )
    out = np.empty(count, dtype=object)
    for i, item in enumerate(flat):
        if not isinstance(item, str):
            raise InvalidArgument(f"input '{name}': BYTES data must be strings")
        out[i] = item.encode()
    return out.reshape(shape)


def _flatten(data: list[Any]) -> list[Any]:
    if data and isinstance(data[0], list):
        flat: list[Any] = []
        for item in data:
            if not isinstance(item, list):
                raise InvalidArgument("'data' is not a regular nested list")
            flat.extend(_flatten(item))
        return flat
    return data


def from_binary(
    name: str, datatype: str, shape: tuple[int, ...], buffer: bytes | memoryview
) -> np.ndarray[Any, Any]:
    """Decode raw little-endian tensor bytes (binary extension, gRPC raw contents)."""
    count = element_count(shape)
    if datatype == "BYTES":
        return _bytes_from_binary(name, shape, buffer, count)
    expected = count * WIRE_ITEMSIZE[datatype]
    if len(buffer) != expected:
        raise InvalidArgument(
            f"input '{name}': {datatype} shape {list(shape)} needs {expected} bytes, got "
            f"{len(buffer)}"
        )
    if datatype == "BF16":
        words = np.frombuffer(buffer, dtype="<u2").astype(np.uint32) << 16
        return words.view(np.float32).reshape(shape)
    if datatype == "BOOL":
        raw = np.frombuffer(buffer, dtype=np.uint8)
        if raw.size and raw.max() > 1:
            raise InvalidArgument(f"input '{name}': BOOL bytes must be 0 or 1")
        return raw.view(np.bool_).reshape(shape)
    return np.frombuffer(buffer, dtype=_LE[datatype]).reshape(shape)


def _bytes_from_binary(
    name: str, shape: tuple[int, ...], buffer: bytes | memoryview, count: int
) -> np.ndarray[Any, Any]:
    view = memoryview(buffer)
    # Each element takes at least its 4-byte length: refuse before allocating.
    if count * 4 > len(view):
        raise InvalidArgument(
            f"input '{name}': BYTES shape {list(shape)} needs at least {count * 4} bytes, "
            f"got {len(view)}"
        )
    out = np.empty(count, dtype=object)
    offset = 0
    for i in range(count):
        if offset + 4 > len(view):
            raise InvalidArgument(f"input '{name}': BYTES data ends inside element {i}")
        length = int.from_bytes(view[offset : offset + 4], "little")
        offset += 4
        if offset + length > len(view):
            raise InvalidArgument(f"input '{name}': BYTES element {i} overruns the buffer")
        out[i] = bytes(view[offset : offset + length])
        offset += length
    if offset != len(view):
        raise InvalidArgument(
            f"input '{name}': {len(view) - offset} bytes left over after {count} BYTES elements"
        )
    return out.reshape(shape)


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
                f"output '{name}' holds bytes that are not UTF-8; request it as binary data"
            ) from exc
    flat: list[Any] = array.reshape(-1).tolist()
    return flat


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


def from_json_auto(name: str, datatype: str, data: Any) -> np.ndarray[Any, Any]:
    """Decode JSON numbers whose shape is given by their nesting (the simple API)."""
    if not isinstance(data, list) or not data:
        raise InvalidArgument(f"input '{name}': expected a non-empty list of numbers")
    try:
        array = np.asarray(data)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"input '{name}': rows must all have the same length") from exc
    if array.dtype == object:
        raise InvalidArgument(f"input '{name}': rows must all have the same length")
    return _cast_json_array(name, datatype, array, data)
