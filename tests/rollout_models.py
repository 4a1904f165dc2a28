"""Test models for guarded rollouts: two versions of a Python model, the second one failing
every ``fail_every``-th request it answers (0: never).

Each answers y = x + version (FP32 ``x`` of shape [1, 2]), one request per call (no
batching, so a failure fails one request). The split starts at ``{"1": 100}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import yaml

MODEL = """
import threading

import numpy as np

FAIL_EVERY = {fail_every}


class Model:
    def load(self, context):
        self.version = float(context.version)
        self.calls = 0
        self.lock = threading.Lock()

    def predict(self, inputs):
        with self.lock:
            self.calls += 1
            calls = self.calls
        if FAIL_EVERY and calls % FAIL_EVERY == 0:
            raise RuntimeError(f"request {{calls}} fails, as every {{FAIL_EVERY}}th does")
        return {{"y": inputs["x"] + self.version}}
"""

CONFIG: dict[str, Any] = {
    "runtime": "python",
    "max_batch_size": 0,
    "warmup": False,
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2]}],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 2]}],
    "version_policy": {"all": True},
    "traffic": {"1": 100},
}

#: A V2 request body for these models.
BODY: Final = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}


def write_model(root: Path, name: str, fail_every: int) -> Path:
    """Model ``name`` under ``root``: version 1 healthy, version 2 failing every
    ``fail_every``-th request."""
    folder = root / name
    for version, every in (("1", 0), ("2", fail_every)):
        (folder / version).mkdir(parents=True, exist_ok=True)
        (folder / version / "model.py").write_text(MODEL.format(fail_every=every))
    (folder / "model.yaml").write_text(yaml.safe_dump(CONFIG))
    return root
