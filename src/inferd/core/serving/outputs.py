"""What a model returns, checked against what it declares.

At warm-up a mismatch refuses the version, with the reason; on every batch it fails the
batch with an internal error that names the model (the details go to the log: they are
the operator's to fix, not the client's). NaN and Inf follow the model's
``nonfinite_outputs`` policy: ``error`` fails the request, ``encode`` sends them (IEEE
values in binary and gRPC contents, "NaN"/"Infinity"/"-Infinity" in JSON).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from inferd.errors import InternalError
from inferd.tensors import all_finite
from inferd.types import DATATYPE_TO_NUMPY, FLOAT_DATATYPES, TensorSpec, shape_matches

log = logging.getLogger("inferd.models")

Arrays = dict[str, np.ndarray[Any, Any]]

#: numpy kinds that hold BYTES (objects of bytes or str, fixed-width bytes or text).
_BYTES_KINDS = frozenset("OSU")


@functools.cache  # a model returns the same dtypes on every batch
def _holds(datatype: str, dtype: np.dtype[Any]) -> bool:
    if datatype == "BYTES":
        return dtype.kind in _BYTES_KINDS
    return bool(np.can_cast(dtype, DATATYPE_TO_NUMPY[datatype], casting="same_kind"))


def output_problems(specs: tuple[TensorSpec, ...], outputs: Mapping[str, Any]) -> list[str]:
    """One line per declared output the model did not produce as declared (checked on
    every batch: the lines are written only when there is a problem)."""
    problems = []
    for spec in specs:
        array = outputs.get(spec.name)
        if array is None:
            got = "not produced"
        elif not isinstance(array, np.ndarray):
            got = f"got {type(array).__name__}"
        elif not shape_matches(spec.shape, array.shape) or not _holds(spec.datatype, array.dtype):
            got = f"got {array.dtype} {list(array.shape)}"
        else:
            continue
        problems.append(f"output '{spec.name}': declared {spec.datatype} {list(spec.shape)}, {got}")
    return problems


def checked_run(
    model: str, version: str, specs: tuple[TensorSpec, ...], run: Callable[[Arrays], Arrays]
) -> Callable[[Arrays], Arrays]:
    """``run`` whose outputs are held to ``specs`` on every batch."""

    def run_checked(inputs: Arrays) -> Arrays:
        outputs = run(inputs)
        problems = output_problems(specs, outputs)
        if problems:
            log.error(
                "model '%s' version '%s' returned outputs unlike its declaration: %s",
                model,
                version,
                "; ".join(problems),
            )
            raise InternalError(
                f"internal error: model '{model}' returned outputs that do not match its "
                "declaration"
            )
        return outputs

    return run_checked


def check_finite(model: str, spec: TensorSpec, array: np.ndarray[Any, Any]) -> None:
    """The ``error`` policy of ``nonfinite_outputs``."""
    if spec.datatype in FLOAT_DATATYPES and not all_finite(array):
        log.warning("model '%s' produced NaN or Inf in output '%s'", model, spec.name)
        raise InternalError(
            f"model '{model}' produced NaN or Inf in output '{spec.name}' "
            "(nonfinite_outputs: error in its model.yaml)"
        )
