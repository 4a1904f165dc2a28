"""JSON tensor ``data``, read once into :class:`JsonData` and cast to a datatype later.

Reading walks the nesting level by level (never recursively: the depth is the client's
choice), notes the Python types of the elements and puts their values in one numpy array.
It needs no declaration, so it can run where it does not hold the event loop
(``http/jsonwork.py`` does it in a worker process for large bodies). Casting
(:func:`cast`) is numpy work on that array, after the core has compared the request's
header with the model's declaration.

What reading makes is cheap to send between processes, because a worker's result is
unpickled in one call that holds the GIL: integers in the narrowest integer type that holds
them (8 million small ones are 8 MB, not 64), and strings as :class:`Texts`, their UTF-8
bytes end to end in one buffer (one copy to unpickle instead of a million string objects).
BYTES elements become Python objects only when cast, slice by slice, where the core runs
large decodes (a thread).

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

#: Elements made into Python objects per step (numpy calls that hold the GIL stay short).
SLICE: Final = 65_536

#: Integer types tried in turn for JSON integers: the first that holds them all.
_INTEGER_TYPES: Final = tuple(np.dtype(t) for t in ("u1", "i1", "u2", "i2", "u4", "i4", "i8", "u8"))

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
class Texts:
    """Strings as UTF-8, end to end in ``blob``: element i is ``blob[ends[i - 1]:ends[i]]``
    (from 0 for the first)."""

    blob: bytes
    ends: np.ndarray[Any, Any]

    @classmethod
    def pack(cls, strings: list[str]) -> Texts:
        """Raises UnicodeEncodeError for a string that is not valid text (a lone surrogate)."""
        encoded = [item.encode() for item in strings]
        ends = np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)))
        if not ends.size or ends[-1] < 2**32:
            ends = ends.astype(np.uint32)  # half the bytes to send
        return cls(b"".join(encoded), ends)

    def unpacked(self, shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
        """An object array of ``shape`` holding the elements as bytes, filled :data:`SLICE`
        elements at a time."""
        out = np.empty(shape, dtype=object)
        flat = out.reshape(-1)
        blob, start = self.blob, 0
        for low in range(0, self.ends.size, SLICE):
            stops = self.ends[low : low + SLICE].tolist()
            starts = [start, *stops[:-1]]
            flat[low : low + len(stops)] = [blob[a:b] for a, b in zip(starts, stops, strict=True)]
            start = stops[-1]
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class JsonData:
    """A JSON list of tensor data, read.

    ``shape`` is its nesting ((n,) for a flat list); ``problem`` says what is wrong with
    the nesting when it is not a regular array ("" otherwise). ``kinds`` names the types
    of the elements; ``values`` holds them row-major when they share one JSON type (bool,
    int, number), else it is None; strings are in ``texts`` instead (None also when one
    is not valid text). ``beyond`` marks integers that neither int64 nor uint64 holds (then
    ``values`` holds them as float64, or is None past its range).
    """

    shape: tuple[int, ...]
    problem: str = ""
    kinds: frozenset[str] = frozenset()
    values: np.ndarray[Any, Any] | None = None
    beyond: bool = False
    texts: Texts | None = None

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
    if kinds == {"str"}:
        try:
            return JsonData(tuple(dims), "", kinds, texts=Texts.pack(level))
        except UnicodeEncodeError:
            return JsonData(tuple(dims), "", kinds)
    values, beyond = _values(level, kinds)
    return JsonData(tuple(dims), "", kinds, values, beyond)


def _values(leaves: list[Any], kinds: frozenset[str]) -> tuple[np.ndarray[Any, Any] | None, bool]:
    if not leaves:
        return np.empty(0), False
    if kinds == {"bool"}:
        return np.array(leaves, dtype=np.bool_), False
    if kinds == {"int"}:
        low, high = min(leaves), max(leaves)
        for dtype in _INTEGER_TYPES:
            info = np.iinfo(dtype)
            if info.min <= low and high <= info.max:
                return np.array(leaves, dtype=dtype), False
    if kinds <= {"int", "float"}:
        try:
            return np.array(leaves, dtype=np.float64), "float" not in kinds
        except OverflowError:  # an integer past float64's range
            return None, True
    return None, False


#: Datatypes whose flat JSON data :func:`flat_numbers` decodes in one numpy call.
_FLAT_FLOATS: Final = frozenset({"FP16", "FP32", "FP64"})
_FLAT_INTEGERS: Final = frozenset(
    {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
)
_FLOAT_LEAVES: Final = frozenset({float, int})
_ONLY_FLOATS: Final = frozenset({float})
#: The largest finite value of each float datatype: a cast within it cannot overflow.
_FLOAT_MAX: Final = {t: float(np.finfo(DATATYPE_TO_NUMPY[t]).max) for t in _FLAT_FLOATS}
_INT_LEAVES: Final = frozenset({int})


def flat_numbers(datatype: str, count: int, data: list[Any]) -> np.ndarray[Any, Any] | None:
    """The usual request, decoded in one numpy call: a flat list of ``count`` numbers of
    a numeric datatype that holds them all. None for anything else (nested data, another
    kind of element, a value out of range, BOOL, BYTES, BF16), which :func:`read` and
    :func:`cast` decode or refuse with their message. What it returns is what they would:
    floats (and integers mixed with them) through float64, integers alone exactly, or
    through int64 for a float datatype."""
    if len(data) != count or not count:
        return None
    kinds = set(map(type, data))
    if datatype in _FLAT_FLOATS:
        if (
            kinds == _ONLY_FLOATS
            and -_FLOAT_MAX[datatype] <= min(data) <= max(data) <= _FLOAT_MAX[datatype]
        ):
            # The usual request: floats that the datatype holds, each rounded once (a
            # Python float is a float64), with nothing to overflow.
            return np.array(data, dtype=DATATYPE_TO_NUMPY[datatype])
        if not kinds <= _FLOAT_LEAVES:
            return None
        try:
            values = np.array(data, dtype=np.float64 if float in kinds else np.int64)
        except OverflowError:  # an integer past int64: the general reader's ranges
            return None
        if datatype == "FP64" and float in kinds:
            return values
        if -_FLOAT_MAX[datatype] <= min(data) and max(data) <= _FLOAT_MAX[datatype]:
            return values.astype(DATATYPE_TO_NUMPY[datatype])  # nothing to overflow
        with np.errstate(over="ignore"):  # past the type's range is Inf, as in cast()
            return values.astype(DATATYPE_TO_NUMPY[datatype])
    if datatype in _FLAT_INTEGERS and kinds == _INT_LEAVES:
        try:
            return np.array(data, dtype=DATATYPE_TO_NUMPY[datatype])
        except OverflowError:  # out of the datatype's range: cast() says so
            return None
    return None


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
    target = DATATYPE_TO_NUMPY[datatype]
    if datatype == "BYTES":
        if data.texts is None and data.count:
            raise InvalidArgument(f"{where}: BYTES data is not valid text")
        return (data.texts or Texts.pack([])).unpacked(shape)
    assert data.values is not None or data.beyond  # elements of one allowed kind
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
