"""The payload abuse tests' repository: models of several datatypes."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path
from typing import Any

import yaml

INTS_MODEL = """
class Model:
    def predict(self, inputs):
        return {"y": inputs["x"]}
"""

TEXTS_MODEL = """
import numpy as np


class Model:
    def predict(self, inputs):
        return {"n": np.array([inputs["s"].size], dtype=np.int64)}
"""


def _python_model(root: Path, name: str, code: str, config: dict[str, Any]) -> None:
    (root / name / "1").mkdir(parents=True)
    (root / name / "1" / "model.py").write_text(textwrap.dedent(code))
    (root / name / "model.yaml").write_text(yaml.safe_dump({"runtime": "python", **config}))


def payload_repo(example_repo: Path, root: Path) -> Path:
    """``tiny`` (FP32 [-1, 4]) from the example; ``ints`` (INT64 x [-1, 2] -> y); ``texts``
    (BYTES s [1, -1], no batching -> INT64 n [1], the number of strings)."""
    shutil.copytree(example_repo / "tiny", root / "tiny")
    _python_model(
        root,
        "ints",
        INTS_MODEL,
        {
            "inputs": [{"name": "x", "datatype": "INT64", "shape": [-1, 2]}],
            "outputs": [{"name": "y", "datatype": "INT64", "shape": [-1, 2]}],
        },
    )
    _python_model(
        root,
        "texts",
        TEXTS_MODEL,
        {
            "inputs": [{"name": "s", "datatype": "BYTES", "shape": [1, -1]}],
            "outputs": [{"name": "n", "datatype": "INT64", "shape": [1]}],
            "max_batch_size": 0,
        },
    )
    return root
