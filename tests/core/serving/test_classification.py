"""The classification extension (core/serving/classification.py), in-process over REST and with
the core's own functions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from inferd.core.messages import RequestedOutput
from inferd.core.serving.classification import classify, requested
from inferd.errors import InvalidArgument
from inferd.types import Tensor
from tests.compat.models import write_model
from tests.conftest import NodeFactory, asgi_client

#: A model of 4 scores per row: the input itself.
SCORES = (
    "class Model:\n"
    "    def predict(self, inputs):\n"
    "        return {'SCORES': inputs['INPUT'], 'RAW': inputs['INPUT']}\n"
)
SCORES_YAML = """runtime: python
max_batch_size: 4
inputs:
  - {name: INPUT, datatype: FP32, dims: [4]}
outputs:
  - {name: SCORES, datatype: FP32, dims: [4], label_filename: labels.txt}
  - {name: RAW, datatype: FP32, dims: [4]}
"""


@pytest.fixture
async def client(tmp_path: Path, node_factory: NodeFactory) -> AsyncIterator[httpx.AsyncClient]:
    folder = write_model(tmp_path, "scores", SCORES, SCORES_YAML)
    (folder / "labels.txt").write_text("cat\ndog\nbird\n")  # one label short: index 3 has none
    async with await asgi_client(node_factory(tmp_path)) as c:
        yield c


def body(rows: list[list[float]], **parameters: object) -> dict[str, object]:
    return {
        "inputs": [{"name": "INPUT", "datatype": "FP32", "shape": [len(rows), 4], "data": rows}],
        "outputs": [
            {"name": "SCORES", "parameters": parameters},
            {"name": "RAW", "parameters": {"classification": 1}},
        ],
    }


async def test_top_classes_with_labels_per_row(client: httpx.AsyncClient) -> None:
    rows = [[0.1, 0.7, 0.05, 0.15], [0.0, 0.0, 0.2, 0.9]]
    answer = await client.post("/v2/models/scores/infer", json=body(rows, classification=2))
    assert answer.status_code == 200, answer.text
    scores, raw = answer.json()["outputs"]
    assert (scores["datatype"], scores["shape"]) == ("BYTES", [2, 2])
    assert scores["data"] == ["0.700000:1:dog", "0.150000:3", "0.900000:3", "0.200000:2:bird"]
    assert raw["data"] == ["0.700000:1", "0.900000:3"]  # RAW has no label file


async def test_more_classes_than_elements_gives_every_element(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        "/v2/models/scores/infer", json=body([[4, 3, 2, 1]], classification=10)
    )
    assert answer.json()["outputs"][0]["shape"] == [1, 4]


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"classification": 0}, "classification must be a positive integer"),
        ({"classification": "2"}, "classification must be a positive integer"),
        ({"classification": True}, "classification must be a positive integer"),
        ({"top_k": 2}, "parameter(s) ['top_k'] are not supported"),
    ],
)
async def test_bad_requests_are_refused(
    client: httpx.AsyncClient, parameters: dict[str, object], message: str
) -> None:
    answer = await client.post("/v2/models/scores/infer", json=body([[1, 2, 3, 4]], **parameters))
    assert answer.status_code == 400
    assert message in answer.json()["error"]


def test_an_unbatched_output_is_classified_whole() -> None:
    tensor = Tensor("y", "INT32", np.array([[1, 5], [3, 2]], dtype=np.int32))
    [out] = classify([tensor], {"y": 3}, {"y": ("a", "b")}, batching=False)
    assert out.datatype == "BYTES"
    assert out.data.tolist() == [b"5.000000:1:b", b"3.000000:2", b"2.000000:3"]


def test_bytes_outputs_cannot_be_classified() -> None:
    tensor = Tensor("y", "BYTES", np.array([b"x"], dtype=object))
    with pytest.raises(InvalidArgument, match="needs a numeric output"):
        classify([tensor], {"y": 1}, {}, batching=False)


def test_requested_reads_only_outputs_that_ask() -> None:
    outputs = [
        RequestedOutput("a", {"binary_data": True}),
        RequestedOutput("b", {"classification": 3}),
    ]
    assert requested(outputs) == {"b": 3}


async def test_a_missing_label_file_fails_the_load(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    write_model(tmp_path, "scores", SCORES, SCORES_YAML)
    node = node_factory(tmp_path)
    await node.start()
    [row] = node.control.repository_index(full=True)
    assert row["state"] == "FAILED"
    assert "label_filename 'labels.txt' cannot be read" in row["reason"]
