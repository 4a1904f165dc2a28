"""The example repository's text model: BYTES in, JSON out, through the request hooks."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np

from inferd.example import TINY, build_example, mlp_reference, mlp_weights
from tests.conftest import NodeFactory, asgi_client


async def test_sentiment_over_v2(example_client: httpx.AsyncClient) -> None:
    texts = ["I love this, it is great", "slow and broken", "a chair", "good but slow"]
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [4], "data": texts}]}
    response = await example_client.post("/v2/models/sentiment/infer", json=body)
    assert response.status_code == 200, response.text
    output = response.json()["outputs"][0]
    assert (output["name"], output["datatype"], output["shape"]) == ("result", "BYTES", [4])
    assert [json.loads(item) for item in output["data"]] == [
        {"label": "positive", "score": 1.0, "words": 6},
        {"label": "negative", "score": -1.0, "words": 3},
        {"label": "neutral", "score": 0.0, "words": 2},
        {"label": "neutral", "score": 0.0, "words": 3},
    ]


async def test_without_torch_tiny_is_onnx_and_answers_alike(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    written = build_example(tmp_path, with_tensorflow=False, with_torch=False)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == [
        "sentiment/1/model.py",
        "tiny/1/model.onnx",
        "wide/1/model.onnx",
        "words/1/model.py",
    ]
    node = node_factory(tmp_path, models={"default_model": "tiny"})
    async with await asgi_client(node) as client:
        answer = await client.post("/predict", json={"inputs": [1, 2, 3, 4]})
    assert answer.status_code == 200, answer.text
    expected = mlp_reference(mlp_weights(TINY, seed=0), np.array([[1, 2, 3, 4]], np.float32))
    np.testing.assert_allclose(answer.json()["predictions"], expected[0], rtol=1e-5)
