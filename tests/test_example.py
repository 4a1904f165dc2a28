"""The example repository's text model: BYTES in, JSON out, through the request hooks."""

from __future__ import annotations

import json

import httpx


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
