"""Triton's ``reshape``: the model takes (or gives) a tensor in another shape than the one
clients see. Inputs are reshaped before the model runs, outputs after, each row keeping
its batch dimension; a version without a reshape runs its model as it is."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from inferd.core.store.model_config import ModelConfig
from inferd.core.store.tensor_config import TensorConfig

Arrays = dict[str, np.ndarray[Any, Any]]
Run = Callable[[Arrays], Arrays]


def _targets(tensors: list[TensorConfig] | None, model_side: bool) -> dict[str, tuple[int, ...]]:
    """name -> the shape (batch dimension excluded) an array is given: the model's
    (``reshape``) or the clients' (the declared shape)."""
    found = {}
    for tensor in tensors or ():
        if tensor.reshape is not None:
            assert tensor.shape is not None
            found[tensor.name] = tuple(tensor.reshape.shape if model_side else tensor.shape)
    return found


def has_reshape(config: ModelConfig) -> bool:
    return any(t.reshape is not None for t in [*(config.inputs or ()), *(config.outputs or ())])


def reshaped(config: ModelConfig, batching: bool, run: Run) -> Run:
    """``run`` with model.yaml's reshapes around it (``run`` itself when there are none)."""
    inputs = _targets(config.inputs, model_side=True)
    outputs = _targets(config.outputs, model_side=False)
    if not inputs and not outputs:
        return run
    skip = 1 if batching else 0  # a declared shape's batch dimension

    def to(arrays: Arrays, targets: dict[str, tuple[int, ...]], drop: int) -> Arrays:
        out = dict(arrays)
        for name, target in targets.items():
            array = arrays.get(name)
            if array is not None:
                lead = array.shape[:1] if batching else ()
                out[name] = array.reshape(lead + target[drop:])
        return out

    def run_reshaped(arrays: Arrays) -> Arrays:
        return to(run(to(arrays, inputs, 0)), outputs, skip)

    return run_reshaped
