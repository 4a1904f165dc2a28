"""The models every contestant serves, and the request bodies sent to them.

Each model is written once per runtime into a model repository; the model-alone
measurement, the naive app and inferd all load those same files.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Final

import numpy as np
import orjson

from inferd.example import (
    TINY,
    WIDE,
    Weights,
    mlp_reference,
    mlp_weights,
    tensor_yaml,
    write_onnx,
    write_torchscript,
)

#: Runtime -> (artifact file name, writer).
WRITERS: Final = {
    "torchscript": ("model.pt", write_torchscript),
    "onnx": ("model.onnx", write_onnx),
}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    sizes: tuple[int, ...]
    seed: int

    @property
    def features(self) -> int:
        return self.sizes[0]

    @property
    def outputs(self) -> int:
        return self.sizes[-1]

    def weights(self) -> Weights:
        return mlp_weights(self.sizes, seed=self.seed)


MODELS: Final = {
    spec.name: spec for spec in (ModelSpec("tiny", TINY, 0), ModelSpec("wide", WIDE, 1))
}


def served_name(model: str, runtime: str) -> str:
    """The name a (model, runtime) pair has in the repository: ``tiny_torchscript``."""
    return f"{model}_{runtime}"


def build_repository(root: Path, models: list[str], max_batch_size: int) -> dict[str, Path]:
    """Write every model in every runtime; returns served name -> artifact path."""
    artifacts = {}
    for model in models:
        spec = MODELS[model]
        weights = spec.weights()
        for runtime, (filename, write) in WRITERS.items():
            folder = root / served_name(model, runtime)
            path = folder / "1" / filename
            write(weights, path)
            (folder / "model.yaml").write_text(
                tensor_yaml(spec.sizes, runtime, max_batch_size=max_batch_size)
            )
            artifacts[served_name(model, runtime)] = path
    return artifacts


@dataclasses.dataclass(frozen=True)
class Payloads:
    """One input row of a model, its expected output, and the bodies that carry it."""

    row: np.ndarray[Any, Any]
    expected: np.ndarray[Any, Any]
    v2_json: bytes
    v2_binary: bytes
    v2_binary_header_length: int
    simple_json: bytes


def payloads(model: str) -> Payloads:
    spec = MODELS[model]
    row = np.random.default_rng(42).standard_normal(spec.features, dtype=np.float32)
    expected = mlp_reference(spec.weights(), row[None, :])[0]
    values = row.tolist()
    tensor = {"name": "input", "datatype": "FP32", "shape": [1, spec.features]}
    v2_json = orjson.dumps({"inputs": [{**tensor, "data": values}]})
    raw = row.tobytes()
    header = orjson.dumps(
        {
            "inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}],
            "outputs": [{"name": "output", "parameters": {"binary_data": True}}],
        }
    )
    return Payloads(
        row=row,
        expected=expected,
        v2_json=v2_json,
        v2_binary=header + raw,
        v2_binary_header_length=len(header),
        simple_json=orjson.dumps({"inputs": values}),
    )
