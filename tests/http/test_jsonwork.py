"""Large JSON bodies parsed in a worker process: the same document, its data read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inferd.errors import InvalidArgument
from inferd.example import TINY, mlp_reference, mlp_weights
from inferd.http.jsonwork import JsonParser, read_tensor_data
from inferd.jsondata import JsonData, cast
from tests.conftest import NodeFactory, asgi_client


def test_tensor_data_is_read_where_decoders_look_for_it() -> None:
    v2 = read_tensor_data({"inputs": [{"name": "x", "data": [1, 2]}, {"name": "y"}], "id": "a"})
    assert isinstance(v2["inputs"][0]["data"], JsonData)
    assert v2["inputs"][1] == {"name": "y"} and v2["id"] == "a"
    simple = read_tensor_data({"batch": [[1, 2]], "inputs": [3]})
    assert isinstance(simple["batch"], JsonData) and isinstance(simple["inputs"], JsonData)
    assert read_tensor_data([1, 2]) == [1, 2]


async def test_large_bodies_are_parsed_in_a_worker() -> None:
    parser = JsonParser(offload_bytes=16)
    try:
        small = await parser.parse(b'{"a": [1]}')
        assert small == {"a": [1]}  # under the threshold: parsed here, left as is
        doc = await parser.parse(b'{"inputs": [{"name": "x", "data": [[1, 2], [3, 4]]}]}')
        data = doc["inputs"][0]["data"]
        assert isinstance(data, JsonData)
        np.testing.assert_array_equal(cast("x", "INT32", (2, 2), data), [[1, 2], [3, 4]])
        with pytest.raises(InvalidArgument, match="malformed JSON"):
            await parser.parse(b'{"inputs": [1, 2, 3, 4, 5, 6, 7, 8')
    finally:
        parser.close()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/predict", {"batch": [[1, 2, 3, 4], [0, 1, 0, 1]]}),
        (
            "/v2/models/tiny/infer",
            {
                "inputs": [
                    {
                        "name": "input",
                        "shape": [2, 4],
                        "datatype": "FP32",
                        "data": [1, 2, 3, 4, 0, 1, 0, 1],
                    }
                ]
            },
        ),
    ],
)
async def test_the_inference_routes_answer_bodies_parsed_in_the_worker(
    path: str, body: dict[str, object], example_repo: Path, node_factory: NodeFactory
) -> None:
    node = node_factory(
        example_repo, models={"default_model": "tiny"}, safeguards={"json_offload_bytes": 16}
    )
    async with await asgi_client(node) as client:
        response = await client.post(path, json=body)
        refused = await client.post(path, content=b'{"inputs": [1, 2, 3, 4')
    assert response.status_code == 200, response.text
    doc = response.json()
    got = doc["predictions"] if path == "/predict" else doc["outputs"][0]["data"]
    rows = np.array([[1, 2, 3, 4], [0, 1, 0, 1]], dtype=np.float32)
    expected = mlp_reference(mlp_weights(TINY, seed=0), rows)
    np.testing.assert_allclose(np.reshape(got, expected.shape), expected, rtol=1e-5)
    assert refused.status_code == 400 and "malformed JSON" in refused.text
