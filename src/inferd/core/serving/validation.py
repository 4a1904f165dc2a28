"""Checks of a request's tensors against what the model version declares.

In two steps, cheap first. :func:`check_header` compares names, datatypes, shapes and the
batch dimension with the declaration using only what the request's header says, before any
element is decoded; :func:`decode_inputs` then decodes the elements and checks their values.
Names, datatypes, shapes and the batch dimension are always checked (a mismatch would
otherwise fail inside the runtime); NaN/Inf and the per-row size limit are the
``safeguards.input_validation`` checks that can be switched off.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Final

import numpy as np

from inferd.core.messages import InputTensor
from inferd.core.store.loaded import LoadedVersion
from inferd.errors import InvalidArgument, clip
from inferd.jsondata import SLICE
from inferd.settings import InputValidationSettings
from inferd.tensors import all_finite
from inferd.types import FLOAT_DATATYPES, TensorSpec, shape_matches

Arrays = dict[str, np.ndarray[Any, Any]]
Checked = list[tuple[TensorSpec, InputTensor]]

#: Decoding work (elements or bytes handled one by one) above which it leaves the event loop.
INLINE_DECODE_COST: Final = 65_536


def check_header(
    version: LoadedVersion, tensors: list[InputTensor], limits: InputValidationSettings
) -> Checked:
    """The request's inputs with their specs, in the declared order; raises InvalidArgument
    naming the input. Touches no element."""
    specs = version.input_index
    if len(tensors) == 1 and len(specs) == 1:  # the usual request: one input
        tensor = tensors[0]
        spec = specs.get(tensor.name)
        if spec is not None:
            _check_header(spec, tensor, version.max_batch_size, limits)
            return [(spec, tensor)]
    given: dict[str, InputTensor] = {}
    for tensor in tensors:
        spec = specs.get(tensor.name)
        if spec is None:
            raise InvalidArgument(
                f"unknown input '{clip(tensor.name)}' for model '{version.model}'; "
                f"expected {sorted(specs)}"
            )
        if tensor.name in given:
            raise InvalidArgument(f"input '{tensor.name}' is given more than once")
        _check_header(spec, tensor, version.max_batch_size, limits)
        given[tensor.name] = tensor
    missing = [name for name in specs if name not in given]
    if missing:
        raise InvalidArgument(f"missing inputs {missing} for model '{version.model}'")
    if version.max_batch_size > 0:
        rows = {tensor.declared_shape[0] for tensor in given.values()}
        if len(rows) > 1:
            raise InvalidArgument(f"inputs disagree on the batch dimension: {sorted(rows)}")
    # Keep the declared order: runtimes that take positional inputs rely on it.
    return [(specs[name], given[name]) for name in specs]


def decode_cost(checked: Checked) -> int:
    return sum(tensor.cost for _, tensor in checked)


def decode_inputs(checked: Checked, limits: InputValidationSettings) -> Arrays:
    """Decode checked inputs and check their values (NaN/Inf where not allowed)."""
    arrays: Arrays = {}
    for spec, tensor in checked:
        array = tensor.decode()
        if (
            limits.enabled
            and spec.datatype in FLOAT_DATATYPES
            and not spec.allow_nonfinite
            and not all_finite(array)
        ):
            raise InvalidArgument(
                f"input '{spec.name}' holds NaN or Inf; the model does not accept them "
                "(allow_nonfinite in model.yaml)"
            )
        arrays[spec.name] = array
    return arrays


def _check_header(
    spec: TensorSpec, tensor: InputTensor, max_batch_size: int, limits: InputValidationSettings
) -> None:
    if tensor.datatype != spec.datatype:
        raise InvalidArgument(
            f"input '{spec.name}': expected datatype {spec.datatype}, got {tensor.datatype}"
        )
    shape = tensor.declared_shape
    if not shape_matches(spec.shape, shape):
        raise InvalidArgument(
            f"input '{spec.name}': expected shape {list(spec.shape)}, got {clip(list(shape))}"
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


def release_inputs(arrays: Arrays) -> None:
    """Empty ``arrays``, freeing large object arrays (BYTES) a slice at a time.

    Freeing a million-element object array is one call that holds the GIL while it frees
    every element (tens of milliseconds), wherever it runs. Run in a thread, this lets
    the event loop in between slices. An array someone else still refers to (a model that
    kept its input, a view) is only let go: its elements are not ours to clear.
    """
    while arrays:
        _, array = arrays.popitem()
        # 2: ``array`` and getrefcount's argument.
        if array.dtype == object and array.size > SLICE and sys.getrefcount(array) == 2:
            flat = array.reshape(-1)
            if flat.base is array:  # contiguous: a view that writes through
                for low in range(0, flat.size, SLICE):
                    flat[low : low + SLICE] = None
            del flat
        del array
