"""JSON tensor ``data``, read once into :class:`JsonData` and cast to a datatype later.

Reading walks the nesting level by level (never recursively: the depth is the client's
choice), notes the Python types of the elements and puts their values in one numpy array.
It needs no declaration, so it can run where it does not hold the event loop
(``http/jsonwork.py`` does it in a worker process for large bodies). Casting
(:func:`cast`) is numpy work on that array, after the core has compared the request's
header with the model's declaration.

JSON is strict: numbers for the FP types (not ``true``/``false``), integers for the INT and
UINT types (not ``1.0``), ``true``/``false`` for BOOL, strings for BYTES. ``data`` is flat
(row-major) or nested exactly as the declared shape.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Final

import numpy as np

from inferd.errors import InvalidArgument, clip
from inferd.types import DATATYPE_TO_NUMPY

MAX_DIMS: Final = 32
_INT64: Final = np.iinfo(np.int64)
_UINT64: Final = np.iinfo(np.uint64)

#: JSON element type -> its name in JsonData.kinds (anything else is "other").
_KIND: Final[dict[type, str]] = {bool: "bool", int: "int", float: "float", str: "str"}

#: V2 datatype -> the element kinds its JSON data may have, and what to call them.
_FLOATS: Final = (frozenset({"int", "float"}), "numbers")
_INTS: Final = (frozenset({"int"}), "integers")
JSON_KINDS: Final[dict[str, tuple[frozenset[str], str]]] = {
    "BOOL": (frozenset({"bool"}), "true/false values"),
    "UINT8": _INTS,
    "UINT16": _INTS,
    "UINT32": _INTS,
    "UINT64": _INTS,
    "INT8": _INTS,
    "INT16": _INTS,
    "INT32": _INTS,
    "INT64": _INTS,
    "FP16": _FLOATS,
    "FP32": _FLOATS,
    "FP64": _FLOATS,
    "BF16": _FLOATS,
    "BYTES": (frozenset({"str"}), "strings"),
}


@dataclasses.dataclass(frozen=True, slots=True)
class JsonData:
    """A JSON list of tensor data, read.

    ``shape`` is its nesting ((n,) for a flat list); ``problem`` says what is wrong with
    the nesting when it is not a regular array ("" otherwise). ``kinds`` names the types
    of the elements; ``values`` holds them row-major when they share one JSON type (bool,
    int, number, string), else it is None. ``beyond`` marks integers that neither int64
    nor uint64 holds (then ``values`` holds them as float64, or is None past its range).
    """

    shape: tuple[int, ...]
    problem: str = ""
    kinds: frozenset[str] = frozenset()
    values: np.ndarray[Any, Any] | None = None
    beyond: bool = False

    @property
    def nested(self) -> bool:
        return len(self.shape) > 1 or bool(self.problem)

    @property
    def count(self) -> int:
        """Elements: the length of a flat list, the product of a nested one's shape."""
        total = 1
        for dim in self.shape:
            total *= dim
        return total


def read(data: list[Any]) -> JsonData:
    """Read a JSON list: its nesting, its elements' types, its values as one array."""
    dims = [len(data)]
    level = data
    while level and type(level[0]) is list:
        if len(dims) == MAX_DIMS:
            return JsonData(tuple(dims), f"is nested deeper than {MAX_DIMS} levels")
        width = len(level[0])
        if any(type(item) is not list or len(item) != width for item in level):
            return JsonData(
                tuple(dims), f"is not a regular array: its rows differ at depth {len(dims)}"
            )
        dims.append(width)
        level = list(itertools.chain.from_iterable(level))
    kinds = frozenset(_KIND.get(t, "list" if t is list else "other") for t in set(map(type, level)))
    if "list" in kinds:
        return JsonData(
            tuple(dims), f"is not a regular array: its rows differ at depth {len(dims)}"
        )
    values, beyond = _values(level, kinds)
    return JsonData(tuple(dims), "", kinds, values, beyond)


def _values(leaves: list[Any], kinds: frozenset[str]) -> tuple[np.ndarray[Any, Any] | None, bool]:
    if not leaves:
        return np.empty(0), False
    if kinds == {"bool"}:
        return np.array(leaves, dtype=np.bool_), False
    if kinds == {"str"}:
        out = np.empty(len(leaves), dtype=object)
        out[:] = leaves
        return out, False
    if kinds == {"int"}:
        low, high = min(leaves), max(leaves)
        if low >= _INT64.min and high <= _INT64.max:
            return np.array(leaves, dtype=np.int64), False
        if low >= 0 and high <= _UINT64.max:
            return np.array(leaves, dtype=np.uint64), False
    if kinds <= {"int", "float"}:
        try:
            return np.array(leaves, dtype=np.float64), "float" not in kinds
        except OverflowError:  # an integer past float64's range
            return None, True
    return None, False


def cast(name: str, datatype: str, shape: tuple[int, ...], data: JsonData) -> np.ndarray[Any, Any]:
    """The data as an array of the datatype and the declared ``shape`` (BF16 as float32,
    not yet rounded to what bfloat16 holds: ``tensors`` does that)."""
    where = f"input '{clip(name)}'"
    count = 1
    for dim in shape:
        count *= dim
    if data.problem:
        raise InvalidArgument(f"{where}: 'data' {data.problem}")
    if data.nested and data.shape != shape:
        raise InvalidArgument(
            f"{where}: 'data' is nested as {list(data.shape)}; shape is {list(shape)}"
        )
    if not data.nested and data.count != count:
        raise InvalidArgument(
            f"{where}: shape {list(shape)} needs {count} elements, 'data' has {data.count}"
        )
    allowed, what = JSON_KINDS[datatype]
    if not data.kinds <= allowed:
        raise InvalidArgument(f"{where}: {datatype} data must be {what}")
    assert data.values is not None or data.beyond  # elements of one allowed kind
    target = DATATYPE_TO_NUMPY[datatype]
    if datatype == "BYTES":
        return _encoded(where, data.values).reshape(shape)
    values = data.values
    if target.kind in "iu":
        info = np.iinfo(target)
        if (
            data.beyond
            or values is None
            or (values.size and (int(values.min()) < info.min or int(values.max()) > info.max))
        ):
            raise InvalidArgument(
                f"{where}: value out of range for {datatype} [{info.min}, {info.max}]"
            )
    elif values is None:
        raise InvalidArgument(f"{where}: a value is out of range for {datatype}")
    with np.errstate(over="ignore"):  # past the type's range is Inf, as in IEEE casts
        out = values.astype(target)
    return out.reshape(shape)


def _encoded(where: str, values: np.ndarray[Any, Any] | None) -> np.ndarray[Any, Any]:
    assert values is not None
    out = np.empty(values.size, dtype=object)
    try:
        out[:] = [item.encode() for item in values]
    except UnicodeEncodeError as exc:
        raise InvalidArgument(f"{where}: BYTES data is not valid text") from exc
    return out
