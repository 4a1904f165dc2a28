"""Checks of a request's tensors against what the model version declares.

Names, datatypes, shapes and the batch dimension are always checked (a mismatch would
otherwise fail inside the runtime); NaN/Inf and the per-row size limit are the
``safeguards.input_validation`` checks that can be switched off.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from inferd.core.manager import LoadedVersion
from inferd.errors import InvalidArgument
from inferd.settings import InputValidationSettings
from inferd.types import FLOAT_DATATYPES, Tensor, TensorSpec

Arrays = dict[str, np.ndarray[Any, Any]]


def _shape_matches(declared: tuple[int, ...], actual: tuple[int, ...]) -> bool:
    return len(declared) == len(actual) and all(
        d == -1 or d == a for d, a in zip(declared, actual, strict=True)
    )


def validate_inputs(
    version: LoadedVersion, tensors: list[Tensor], limits: InputValidationSettings
) -> Arrays:
    """The request's inputs by name, checked; raises InvalidArgument naming the input."""
    specs = {spec.name: spec for spec in version.inputs}
    arrays: Arrays = {}
    for tensor in tensors:
        spec = specs.get(tensor.name)
        if spec is None:
            raise InvalidArgument(
                f"unknown input '{tensor.name}' for model '{version.model}'; "
                f"expected {sorted(specs)}"
            )
        if tensor.name in arrays:
            raise InvalidArgument(f"input '{tensor.name}' is given more than once")
        _check_tensor(spec, tensor, version.max_batch_size, limits)
        arrays[tensor.name] = tensor.data
    missing = [name for name in specs if name not in arrays]
    if missing:
        raise InvalidArgument(f"missing inputs {missing} for model '{version.model}'")
    if version.max_batch_size > 0:
        rows = {array.shape[0] for array in arrays.values()}
        if len(rows) > 1:
            raise InvalidArgument(f"inputs disagree on the batch dimension: {sorted(rows)}")
    # Keep the declared order: runtimes that take positional inputs rely on it.
    return {name: arrays[name] for name in specs}


def _check_tensor(
    spec: TensorSpec, tensor: Tensor, max_batch_size: int, limits: InputValidationSettings
) -> None:
    if tensor.datatype != spec.datatype:
        raise InvalidArgument(
            f"input '{spec.name}': expected datatype {spec.datatype}, got {tensor.datatype}"
        )
    shape = tensor.data.shape
    if not _shape_matches(spec.shape, shape):
        raise InvalidArgument(
            f"input '{spec.name}': expected shape {list(spec.shape)}, got {list(shape)}"
        )
    if max_batch_size > 0 and not 1 <= shape[0] <= max_batch_size:
        raise InvalidArgument(
            f"input '{spec.name}': batch dimension {shape[0]} is outside 1..{max_batch_size} "
            "(max_batch_size)"
        )
    if not limits.enabled:
        return
    per_row = math.prod(shape[1:]) if max_batch_size > 0 else math.prod(shape)
    if per_row > limits.max_sequence_length:
        raise InvalidArgument(
            f"input '{spec.name}': {per_row} elements per row exceed max_sequence_length "
            f"{limits.max_sequence_length}"
        )
    if (
        spec.datatype in FLOAT_DATATYPES
        and not spec.allow_nonfinite
        and not np.isfinite(tensor.data).all()
    ):
        raise InvalidArgument(
            f"input '{spec.name}' holds NaN or Inf; the model does not accept them "
            "(allow_nonfinite in model.yaml)"
        )
