"""The simple API's data: one row (or a batch of rows) of a model's one input, and back.

A row has the shape of the model's input without the batch dimension (``[-1, 2, 3]`` ->
``[2, 3]``), written as nested JSON lists; a batch is a list of rows. A model that does not
batch takes one row of its whole input shape. BYTES rows hold strings.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inferd.errors import InvalidArgument
from inferd.tensors import check_datatype, from_json_auto
from inferd.types import TensorSpec


def _matches(declared: tuple[int, ...], actual: tuple[int, ...]) -> bool:
    return len(declared) == len(actual) and all(
        d == -1 or d == a for d, a in zip(declared, actual, strict=True)
    )


def _strings(name: str, data: Any) -> np.ndarray[Any, Any]:
    """Nested lists of strings (or one string) as an object array of UTF-8 bytes."""
    try:
        array = np.asarray(data, dtype=object) if isinstance(data, list) else None
    except ValueError as exc:
        raise InvalidArgument(f"input '{name}': rows must all have the same length") from exc
    if array is None:
        array = np.empty((), dtype=object)
        array[()] = data
    out = np.empty(array.shape, dtype=object)
    for index, item in np.ndenumerate(array):
        if not isinstance(item, str):
            raise InvalidArgument(f"input '{name}': BYTES data must be strings")
        out[index] = item.encode()
    return out


def _decode(spec: TensorSpec, data: Any) -> np.ndarray[Any, Any]:
    check_datatype(spec.name, spec.datatype)
    if spec.datatype == "BYTES":
        return _strings(spec.name, data)
    return from_json_auto(spec.name, spec.datatype, data)


def simple_array(
    model: str, spec: TensorSpec, batching: bool, data: Any, *, batched: bool, flat: bool = False
) -> np.ndarray[Any, Any]:
    """The input tensor for ``data``: one row (``inputs``) or a list of rows (``batch``),
    checked against the declared shape. ``flat``: one row given flattened (gRPC Predict),
    reshaped to the row shape."""
    row = spec.shape[1:] if batching else spec.shape
    array = _decode(spec, data)
    declared = f"input '{spec.name}' of model '{model}' is {list(spec.shape)}"
    if flat:
        if row.count(-1) > 1:
            raise InvalidArgument(
                f"a flat row cannot be shaped: {declared}; use ModelInfer with a shape"
            )
        try:
            array = array.reshape(row)
        except ValueError:
            raise InvalidArgument(
                f"{array.size} values do not make one row of shape {list(row)} ({declared})"
            ) from None
    if batched:
        if not batching:
            raise InvalidArgument(
                f"model '{model}' does not batch (max_batch_size 0): send one row as 'inputs' "
                f"of shape {list(row)}"
            )
        if array.ndim == 0 or not _matches(row, array.shape[1:]):
            raise InvalidArgument(
                f"'batch' must be a list of rows of shape {list(row)} ({declared}); got shape "
                f"{list(array.shape)}"
            )
        return array
    if not _matches(row, array.shape):
        raise InvalidArgument(
            f"'inputs' must be one row of shape {list(row)} ({declared}); got shape "
            f"{list(array.shape)}; send several rows as 'batch'"
        )
    return array[None, ...] if batching else array


def predictions(array: np.ndarray[Any, Any], datatype: str) -> Any:
    """An output as JSON values: nested lists of numbers, or of strings for BYTES."""
    if datatype != "BYTES":
        return array.tolist()
    try:
        text = np.frompyfunc(lambda b: b.decode() if isinstance(b, bytes) else str(b), 1, 1)
        return np.asarray(text(array), dtype=object).tolist()
    except UnicodeDecodeError:
        raise InvalidArgument(
            "the model's output is not UTF-8 text; use the V2 infer endpoint with binary data"
        ) from None
