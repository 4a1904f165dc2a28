"""A Python model for inferd: edit ``load`` and ``predict``; model.yaml declares the tensors.

inferd imports this file and calls, in order: ``Model()``, ``load(context)`` once, then
``predict(inputs)`` for every batch. ``inputs`` maps each declared input to a numpy array
whose first dimension is the batch; return every declared output the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from inferd.runtimes.python_api import LoadContext

Arrays = dict[str, np.ndarray[Any, Any]]


class Model:
    def load(self, context: LoadContext) -> None:
        # context.folder is this version's folder (read weights from there);
        # context.parameters is the `parameters:` mapping of model.yaml.
        self.scale = float(context.parameters.get("scale", 1.0))

    def predict(self, inputs: Arrays) -> Arrays:
        x = inputs["input"]
        return {"output": (x.sum(axis=1, keepdims=True) * self.scale).astype(np.float32)}

    # Optional hooks, for models that take more than tensors (text in, JSON out):
    #   decode_request(self, request) -> item     one request row -> what predict takes
    #   batch(self, items) -> x                   default: the list of items
    #   unbatch(self, output) -> list             default: list(output)
    #   encode_response(self, output) -> dict     one row's outputs by name
    # predict may be `async def`. See docs/python-models.md.
