"""docs/export.md runs as written: its recipes' code is executed and what they write is served."""

from __future__ import annotations

import asyncio
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inferd.cli import main
from tests.conftest import NodeFactory, asgi_client

DOC: Path = Path(__file__).parents[1] / "docs" / "export.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
PATH_COMMENT = re.compile(r"^# (\S+/\S+)$")


def recipe(heading: str) -> list[tuple[str, str]]:
    """The fenced blocks (language, text) of the ``## heading`` section, subsections included."""
    text = DOC.read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return FENCE.findall(text[start : end if end > 0 else None])


def run_recipe(heading: str, folder: Path) -> dict[str, Any]:
    """Write the section's file blocks, then run its Python blocks, in order, as one module
    in ``folder`` (the working directory); returns the names the code defined. Shell blocks
    are the commands this test runs itself."""
    code = []
    for language, block in recipe(heading):
        target = PATH_COMMENT.match(block.splitlines()[0])
        if target is not None:
            path = folder / target.group(1)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block)
        elif language == "python":
            code.append(block)
    # A real module from a real file: torch.jit.script reads the source of what it compiles.
    script = folder / "recipe.py"
    script.write_text("\n".join(code))
    spec = importlib.util.spec_from_file_location("export_recipe", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return vars(module)


async def infer(node: Any, model: str, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    body = {
        "inputs": [
            {
                "name": "input",
                "datatype": "FP32",
                "shape": list(x.shape),
                "data": x.ravel().tolist(),
            }
        ]
    }
    async with await asgi_client(node) as client:
        response = await client.post(f"/v2/models/{model}/infer", json=body)
    assert response.status_code == 200, response.text
    output = response.json()["outputs"][0]
    assert output["name"] == "probabilities"
    return np.array(output["data"], dtype=np.float32).reshape(output["shape"])


def test_every_section_has_code() -> None:
    for heading in (
        "PyTorch",
        "TensorFlow → SavedModel",
        "scikit-learn through the Python runtime",
    ):
        assert "python" in [language for language, _ in recipe(heading)], heading


async def test_pytorch_recipes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, node_factory: NodeFactory
) -> None:
    import torch

    monkeypatch.chdir(tmp_path)
    names = run_recipe("PyTorch", tmp_path)
    assert await asyncio.to_thread(main, ["validate", "models"]) == 0
    x = np.random.default_rng(0).standard_normal((5, 4), dtype=np.float32)
    with torch.no_grad():
        expected = names["model"](torch.from_numpy(x)).numpy()
    node = node_factory(tmp_path / "models")
    for model in ("classifier_ts", "classifier_onnx", "classifier_onnx_legacy"):
        np.testing.assert_allclose(await infer(node, model, x), expected, rtol=1e-5, atol=1e-6)


async def test_scikit_learn_recipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, node_factory: NodeFactory
) -> None:
    monkeypatch.chdir(tmp_path)
    names = run_recipe("scikit-learn through the Python runtime", tmp_path)
    assert await asyncio.to_thread(main, ["validate", "models"]) == 0
    x = names["features"][::30].astype(np.float32)
    expected = names["clf"].predict_proba(x)
    node = node_factory(tmp_path / "models")
    np.testing.assert_allclose(await infer(node, "iris", x), expected, rtol=1e-4, atol=1e-5)
    async with await asgi_client(node) as client:
        answer = await client.post("/models/iris/predict", json={"inputs": [5.1, 3.5, 1.4, 0.2]})
    assert np.argmax(answer.json()["predictions"]) == 0
