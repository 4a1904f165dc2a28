"""The simple API: /predict and /models/{m}/predict."""

from __future__ import annotations

import httpx
import numpy as np
import orjson
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
        (
            "/predict",
            {"inputs": [1, 2, 3]},
            400,
            "'inputs' must be one row of shape [4] (input 'input' of model 'tiny' is [-1, 4]); "
            "got shape [3]",
        ),
        ("/predict", {"inputs": [1, 2, 3, 4], "model_version": "9"}, 404, "no version '9'"),
        (
            "/predict",
            {"inputs": [1, 2, 3, 4], "model_version": 1},
            400,
            "'model_version' must be a string",
        ),
        ("/predict", {"inputs": [1, 2, 3, 4], "batch": [[1, 2, 3, 4]]}, 400, "exactly one of"),
        ("/predict", {}, 400, "exactly one of"),
        (
            "/predict",
            {"inputs": [[1, 2, 3, 4]]},
            400,
            "got shape [1, 4]; send several rows as 'batch'",
        ),
        ("/predict", {"batch": [1, 2, 3, 4]}, 400, "list of rows"),
        ("/predict", {"batch": [[1, 2, 3, 4], [1, 2]]}, 400, "rows differ at depth 1"),
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


async def test_default_model_must_be_chosen_among_several(example_repo, node_factory) -> None:
    from tests.conftest import asgi_client

    node = node_factory(example_repo)
    async with await asgi_client(node) as client:
        response = await client.post("/predict", json={"inputs": [1, 2, 3, 4]})
        assert response.status_code == 400
        assert "default_model" in response.json()["error"]


GRID_MODEL = """
class Model:
    def predict(self, inputs):
        return {"y": inputs["x"] * 2}
"""


async def test_predict_rows_of_several_dimensions(tmp_path, node_factory) -> None:
    from tests.conftest import asgi_client
    from tests.runtimes.test_python import write_model

    grid = {"name": "x", "datatype": "FP32", "shape": [-1, 2, 3]}
    config = {"runtime": "python", "inputs": [grid], "outputs": [{**grid, "name": "y"}]}
    write_model(tmp_path / "grid", GRID_MODEL, config)
    row = [[1, 2, 3], [4, 5, 6]]
    node = node_factory(tmp_path)
    async with await asgi_client(node) as client:
        one = await client.post("/predict", json={"inputs": row})
        assert one.status_code == 200, one.text
        assert one.json()["predictions"] == [[2, 4, 6], [8, 10, 12]]
        batch = await client.post("/models/grid/predict", json={"batch": [row, row]})
        assert batch.json()["predictions"] == [[[2, 4, 6], [8, 10, 12]]] * 2
        wrong = await client.post("/predict", json={"inputs": [1, 2, 3]})
        assert wrong.status_code == 400
        assert wrong.json()["error"] == (
            "'inputs' must be one row of shape [2, 3] (input 'x' of model 'grid' is "
            "[-1, 2, 3]); got shape [3]; send several rows as 'batch'"
        )


V2_BODY = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}


@pytest.mark.parametrize(
    ("path", "route"),
    [("/predict", "/v2/models/tiny/infer"), ("/models/wide/predict", "/v2/models/wide/infer")],
)
async def test_a_v2_body_is_pointed_to_the_v2_route(
    example_client: httpx.AsyncClient, path: str, route: str
) -> None:
    response = await example_client.post(path, json={**V2_BODY, "id": "r1"})
    assert response.status_code == 400
    assert response.json()["error"] == (
        f"this is an Open Inference Protocol (V2) request: post it to {route}; "
        '/predict takes {"inputs": row} or {"batch": [rows]}'
    )


async def test_predict_text_with_the_example_text_model(example_client: httpx.AsyncClient) -> None:
    response = await example_client.post(
        "/models/sentiment/predict", json={"inputs": "What a great, fast server"}
    )
    assert response.status_code == 200, response.text
    assert orjson.loads(response.json()["predictions"]) == {
        "label": "positive",
        "score": 1.0,
        "words": 5,
    }
    batch = await example_client.post(
        "/models/sentiment/predict", json={"batch": ["awful and slow", "a table"]}
    )
    assert [orjson.loads(p)["label"] for p in batch.json()["predictions"]] == [
        "negative",
        "neutral",
    ]
