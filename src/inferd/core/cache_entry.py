"""What the prediction cache keeps of an answer: bytes for Redis, arrays in process.

Shared values are the output tensors as raw bytes behind a small header (:func:`encode`),
never pickle. The in-process store keeps each answer's arrays themselves (:func:`kept`),
counted at the memory they take, so ``cache.max_bytes`` bounds what the process holds.
"""

from __future__ import annotations

import functools
import struct
import sys
from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from inferd.tensors import from_binary, to_binary
from inferd.types import Tensor

MAGIC: Final = b"IFDC\x01"
_COUNT: Final = struct.Struct("<H")
_TENSOR: Final = struct.Struct("<HBBQ")  # name length, datatype length, dims, data length
_DIM: Final = struct.Struct("<q")

#: What the in-process store keeps of an answer: each output's name, datatype and array.
Kept = tuple[tuple[str, str, np.ndarray[Any, Any]], ...]

#: Bytes a kept answer takes besides its arrays: its outer tuple, and per output the
#: (name, datatype, array) tuple (the names are the version's own strings, shared).
_KEPT_BYTES: Final = sys.getsizeof(())
_OUTPUT_BYTES: Final = sys.getsizeof((None, None, None))


def encode(tensors: Sequence[Tensor]) -> bytes:
    """Output tensors as bytes: a magic, a count, then per tensor its name, datatype,
    shape and raw little-endian data (BYTES: 4-byte lengths, as on the wire)."""
    parts = [MAGIC, _COUNT.pack(len(tensors))]
    for tensor in tensors:
        data = to_binary(tensor.datatype, tensor.data)
        parts += (_entry_header(tensor.name, tensor.datatype, tensor.data.shape, len(data)), data)
    return b"".join(parts)


@functools.lru_cache(maxsize=1024)
def _entry_header(name: str, datatype: str, shape: tuple[int, ...], size: int) -> bytes:
    """What :func:`encode` writes before a tensor's data."""
    name_bytes, type_bytes = name.encode(), datatype.encode()
    head = _TENSOR.pack(len(name_bytes), len(type_bytes), len(shape), size)
    return b"".join((head, name_bytes, type_bytes, *(_DIM.pack(dim) for dim in shape)))


def kept(tensors: Sequence[Tensor]) -> tuple[Kept, int]:
    """An answer as the in-process store keeps it (read-only copies of the arrays, which
    may be views of a whole batch's output), and the bytes it takes in the process: the
    tuples, each array's object and data (``sys.getsizeof``), and for BYTES each element's
    object."""
    held = []
    size = _KEPT_BYTES + len(tensors) * _OUTPUT_BYTES
    for tensor in tensors:
        data = tensor.data.copy()
        data.flags.writeable = False
        held.append((tensor.name, tensor.datatype, data))
        size += sys.getsizeof(data)
        if data.dtype.hasobject:
            size += sum(map(sys.getsizeof, data.flat))
    return tuple(held), size


def decode(value: bytes) -> list[Tensor]:
    """The tensors :func:`encode` wrote; ValueError for anything else."""
    if not value.startswith(MAGIC):
        raise ValueError("not a cache entry")
    view = memoryview(value)
    offset = len(MAGIC)
    (count,) = _COUNT.unpack_from(view, offset)
    offset += _COUNT.size
    tensors = []
    for _ in range(count):
        name_len, type_len, ndim, data_len = _TENSOR.unpack_from(view, offset)
        offset += _TENSOR.size
        name = bytes(view[offset : offset + name_len]).decode()
        offset += name_len
        datatype = bytes(view[offset : offset + type_len]).decode()
        offset += type_len
        shape = tuple(_DIM.unpack_from(view, offset + i * _DIM.size)[0] for i in range(ndim))
        offset += ndim * _DIM.size
        data = bytes(view[offset : offset + data_len])
        offset += data_len
        tensors.append(Tensor(name, datatype, from_binary(name, datatype, shape, data)))
    if offset != len(value):
        raise ValueError("cache entry has trailing bytes")
    return tensors
