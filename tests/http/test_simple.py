"""The simple API: /predict and /models/{m}/predict."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from inferd.example import TINY, mlp_reference, mlp_weights

TINY_W = mlp_weights(TINY, seed=0)


async def test_predict_default_model(example_client: httpx.AsyncClient) -> None:
    response = await example_client.post("/predict", json={"inputs": [1, 2, 3, 4]})
    assert response.status_code == 200, response.text
    doc = response.json()
    assert set(doc) == {"predictions", "model_version", "latency_ms"}
    assert doc["model_version"] == "1"
    assert doc["latency_ms"] >= 0
    expected = mlp_reference(TINY_W, np.array([[1, 2, 3, 4]], dtype=np.float32))[0]
    np.testing.assert_allclose(doc["predictions"], expected, rtol=1e-5)


async def test_predict_batch(example_client: httpx.AsyncClient) -> None:
    rows = [[1, 2, 3, 4], [0, 0, 0, 0], [-1, 0.5, 2, 7]]
    doc = (await example_client.post("/predict", json={"batch": rows})).json()
    assert len(doc["predictions"]) == 3
    np.testing.assert_allclose(
        doc["predictions"], mlp_reference(TINY_W, np.array(rows, dtype=np.float32)), rtol=1e-5
    )


async def test_predict_named_model_and_version(example_client: httpx.AsyncClient) -> None:
    response = await example_client.post(
        "/models/wide/predict", json={"inputs": [0.5] * 256, "model_version": "1"}
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 16


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/predict", {"inputs": [1, 2, 3]}, 400, "expected shape [-1, 4], got [1, 3]"),
        ("/predict", {"inputs": [1, 2, 3, 4], "model_version": "9"}, 404, "no version '9'"),
        (
            "/predict",
            {"inputs": [1, 2, 3, 4], "model_version": 1},
            400,
            "'model_version' must be a string",
        ),
        ("/predict", {"inputs": [1, 2, 3, 4], "batch": [[1, 2, 3, 4]]}, 400, "exactly one of"),
        ("/predict", {}, 400, "exactly one of"),
        ("/predict", {"inputs": [[1, 2, 3, 4]]}, 400, "flat list"),
        ("/predict", {"batch": [1, 2, 3, 4]}, 400, "list of rows"),
        ("/predict", {"batch": [[1, 2, 3, 4], [1, 2]]}, 400, "same length"),
        ("/predict", {"inputs": [1, 2, "x", 4]}, 400, "must be numbers"),
        ("/predict", {"inputs": []}, 400, "non-empty"),
        ("/predict", {"inputs": [1, 2, 3, 4], "extra": 1}, 400, "unknown field"),
        ("/predict", [1, 2, 3, 4], 400, "JSON object"),
        ("/predict", {"batch": [[1, 2, 3, 4]] * 33}, 400, "outside 1..32"),
        ("/models/nope/predict", {"inputs": [1, 2, 3, 4]}, 404, "not known"),
        ("/models/..%2Fetc/predict", {"inputs": [1, 2, 3, 4]}, 404, "Not Found"),
        ("/models/a..b/predict", {"inputs": [1, 2, 3, 4]}, 400, "not allowed"),
    ],
)
async def test_predict_errors(
    example_client: httpx.AsyncClient, path: str, body: object, status: int, message: str
) -> None:
    response = await example_client.post(path, json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


async def test_default_model_must_be_chosen_among_several(example_repo, service_factory) -> None:
    from tests.conftest import asgi_client

    service = service_factory(example_repo)
    async with await asgi_client(service) as client:
        response = await client.post("/predict", json={"inputs": [1, 2, 3, 4]})
        assert response.status_code == 400
        assert "default_model" in response.json()["error"]
