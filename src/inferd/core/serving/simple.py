"""The simple API's data: one row (or a batch of rows) of a model's one input, and back.

A row has the shape of the model's input without the batch dimension (``[-1, 2, 3]`` ->
``[2, 3]``), written as nested JSON lists; a batch is a list of rows. A model that does not
batch takes one row of its whole input shape. BYTES rows hold strings.

The shape is read from the nesting and checked against the declaration before any element
is decoded; the elements are decoded with the V2 route's strict rules (``jsondata``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from inferd.errors import InvalidArgument
from inferd.tensors import WireTensor, auto_tensor, check_datatype, json_values
from inferd.types import TensorSpec, shape_matches


def _one_string(spec: TensorSpec, text: str) -> WireTensor:
    def decode() -> np.ndarray[Any, Any]:
        array = np.empty((), dtype=object)
        array[()] = text.encode()
        return array

    return WireTensor(spec.name, spec.datatype, (), decode)


def _flat_row(
    tensor: WireTensor, row: tuple[int, ...], declared: str
) -> tuple[tuple[int, ...], Any]:
    """The row shape a flat row takes (its one -1 worked out), and its decoder."""
    if row.count(-1) > 1:
        raise InvalidArgument(
            f"a flat row cannot be shaped: {declared}; use ModelInfer with a shape"
        )
    size = math.prod(tensor.shape)
    known = math.prod(d for d in row if d != -1)
    if not known or (-1 not in row and size != known) or size % known:
        raise InvalidArgument(
            f"{size} values do not make one row of shape {list(row)} ({declared})"
        )
    shape = tuple(size // known if d == -1 else d for d in row)
    decode = tensor.decoder
    return shape, lambda: decode().reshape(shape)


def simple_tensor(
    model: str, spec: TensorSpec, batching: bool, data: Any, *, batched: bool, flat: bool = False
) -> WireTensor:
    """The input tensor for ``data``: one row (``inputs``) or a list of rows (``batch``),
    its shape checked against the declared shape, its elements not yet decoded. ``flat``:
    one row given flattened (gRPC Predict), shaped as the row."""
    check_datatype(spec.name, spec.datatype)
    row = spec.shape[1:] if batching else spec.shape
    if spec.datatype == "BYTES" and isinstance(data, str):
        tensor = _one_string(spec, data)
    else:
        tensor = auto_tensor(spec.name, spec.datatype, data)
    shape, decode = tensor.shape, tensor.decoder
    declared = f"input '{spec.name}' of model '{model}' is {list(spec.shape)}"
    if flat:
        shape, decode = _flat_row(tensor, row, declared)
    if batched:
        if not batching:
            raise InvalidArgument(
                f"model '{model}' does not batch (max_batch_size 0): send one row as 'inputs' "
                f"of shape {list(row)}"
            )
        if not shape or not shape_matches(row, shape[1:]):
            raise InvalidArgument(
                f"'batch' must be a list of rows of shape {list(row)} ({declared}); got shape "
                f"{list(shape)}"
            )
    elif not shape_matches(row, shape):
        raise InvalidArgument(
            f"'inputs' must be one row of shape {list(row)} ({declared}); got shape "
            f"{list(shape)}; send several rows as 'batch'"
        )
    elif batching:
        one, shape = decode, (1, *shape)
        decode = lambda: one()[None, ...]  # noqa: E731
    return WireTensor(spec.name, spec.datatype, shape, decode, tensor.cost)


def simple_array(
    model: str, spec: TensorSpec, batching: bool, data: Any, *, batched: bool, flat: bool = False
) -> np.ndarray[Any, Any]:
    """:func:`simple_tensor`, decoded."""
    return simple_tensor(model, spec, batching, data, batched=batched, flat=flat).decode()


def predictions(array: np.ndarray[Any, Any], datatype: str) -> Any:
    """An output as JSON values: nested lists of numbers (NaN and Inf named as in
    ``tensors.json_values``), or of strings for BYTES."""
    if datatype != "BYTES":
        return json_values(array)
    try:
        text = np.frompyfunc(lambda b: b.decode() if isinstance(b, bytes) else str(b), 1, 1)
        return np.asarray(text(array), dtype=object).tolist()
    except UnicodeDecodeError:
        raise InvalidArgument(
            "the model's output is not UTF-8 text; use the V2 infer endpoint with binary data"
        ) from None
