"""Shared value types: V2 datatypes and tensor specifications."""

from __future__ import annotations

import dataclasses
from typing import Any, Final

import numpy as np

#: V2 datatype -> numpy dtype. BYTES tensors are numpy object arrays of ``bytes``;
#: BF16 travels as raw 2-byte words and is held as float32 inside the core.
DATATYPE_TO_NUMPY: Final[dict[str, np.dtype[Any]]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BF16": np.dtype(np.float32),
    "BYTES": np.dtype(np.object_),
}

NUMPY_TO_DATATYPE: Final[dict[np.dtype[Any], str]] = {
    dtype: name for name, dtype in DATATYPE_TO_NUMPY.items() if name not in ("BF16",)
}

#: Size in bytes of one element on the wire (binary extension / raw contents).
WIRE_ITEMSIZE: Final[dict[str, int]] = {
    name: (2 if name == "BF16" else dtype.itemsize)
    for name, dtype in DATATYPE_TO_NUMPY.items()
    if name != "BYTES"
}

FLOAT_DATATYPES: Final[frozenset[str]] = frozenset({"FP16", "FP32", "FP64", "BF16"})

#: Triton's model-configuration names for the V2 datatypes.
TRITON_CONFIG_DATATYPE: Final[dict[str, str]] = {
    "BOOL": "TYPE_BOOL",
    "UINT8": "TYPE_UINT8",
    "UINT16": "TYPE_UINT16",
    "UINT32": "TYPE_UINT32",
    "UINT64": "TYPE_UINT64",
    "INT8": "TYPE_INT8",
    "INT16": "TYPE_INT16",
    "INT32": "TYPE_INT32",
    "INT64": "TYPE_INT64",
    "FP16": "TYPE_FP16",
    "FP32": "TYPE_FP32",
    "FP64": "TYPE_FP64",
    "BF16": "TYPE_BF16",
    "BYTES": "TYPE_STRING",
}


def shape_matches(declared: tuple[int, ...], actual: tuple[int, ...]) -> bool:
    """``actual`` has the declared rank and every fixed (not -1) dimension."""
    if len(declared) != len(actual):
        return False
    for d, a in zip(declared, actual, strict=True):  # noqa: SIM110 - a generator costs more
        if d != -1 and d != a:
            return False
    return True


def datatype_of(array: np.ndarray[Any, Any]) -> str:
    """The V2 datatype that holds ``array`` without loss."""
    try:
        return NUMPY_TO_DATATYPE[array.dtype]
    except KeyError:
        if array.dtype.kind in ("U", "S"):
            return "BYTES"
        raise


@dataclasses.dataclass(frozen=True, slots=True)
class TensorSpec:
    """A declared model input or output. ``shape`` excludes nothing: for a batching
    model its first dimension is the batch dimension and is -1."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    allow_nonfinite: bool = False

    def as_metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclasses.dataclass(slots=True)
class Tensor:
    """A named tensor inside the core: data is a numpy array of the datatype's dtype."""

    name: str
    datatype: str
    data: np.ndarray[Any, Any]
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def shape(self) -> list[int]:
        return list(self.data.shape)

    # An input decoded already reads as a ``tensors.WireTensor`` whose decoding is free.
    cost = 0

    @property
    def declared_shape(self) -> tuple[int, ...]:
        shape: tuple[int, ...] = self.data.shape
        return shape

    def decode(self) -> np.ndarray[Any, Any]:
        return self.data
