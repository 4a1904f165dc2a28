"""Config parity with Triton: model.yaml's Triton fields (dims, format, reshape,
label_filename) and the configuration answer in Triton's JSON form."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml as pyyaml
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2

from inferd.core.store.model_config import ModelConfig, read_model_config
from inferd.errors import ConfigError
from tests.compat.models import write_model
from tests.conftest import NodeFactory, asgi_client

#: The model takes its input as [batch, 2, 2] (reshape); clients send [batch, 4].
IMAGE = (
    "class Model:\n"
    "    def predict(self, inputs):\n"
    "        x = inputs['IMAGE']\n"
    "        assert x.shape[1:] == (2, 2), x.shape\n"
    "        return {'OUT': x * 2, 'PROBS': x.reshape(len(x), 4)}\n"
)
IMAGE_YAML = """runtime: python
max_batch_size: 2
version_policy: {latest: 1}
inputs:
  - {name: IMAGE, datatype: FP32, dims: [4], format: NCHW, reshape: {shape: [2, 2]}}
outputs:
  - {name: OUT, datatype: FP32, dims: [4], reshape: {shape: [2, 2]}}
  - {name: PROBS, datatype: FP32, dims: [4], label_filename: labels.txt}
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    folder = write_model(tmp_path, "image", IMAGE, IMAGE_YAML)
    (folder / "labels.txt").write_text("a\nb\nc\nd\n")
    return tmp_path


async def test_rest_config_parses_as_tritons_model_config(
    repo: Path, node_factory: NodeFactory
) -> None:
    async with await asgi_client(node_factory(repo)) as client:
        doc = (await client.get("/v2/models/image/config")).json()
    config = json_format.ParseDict(doc, model_config_pb2.ModelConfig())  # unknown fields fail
    assert config.version_policy.latest.num_versions == 1
    image = config.input[0]
    assert image.format == model_config_pb2.ModelInput.FORMAT_NCHW
    assert list(image.dims) == [4]
    assert list(image.reshape.shape) == [2, 2]
    assert list(config.output[0].reshape.shape) == [2, 2]
    assert config.output[1].label_filename == "labels.txt"
    assert config.max_batch_size == 2
    assert config.dynamic_batching.max_queue_delay_microseconds >= 0


async def test_reshape_gives_the_model_its_shape_and_clients_theirs(
    repo: Path, node_factory: NodeFactory
) -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    body = {"inputs": [{"name": "IMAGE", "datatype": "FP32", "shape": [2, 4], "data": x.tolist()}]}
    async with await asgi_client(node_factory(repo)) as client:
        answer = await client.post("/v2/models/image/infer", json=body)
    assert answer.status_code == 200, answer.text
    out = answer.json()["outputs"][0]
    assert out["shape"] == [2, 4]
    assert out["data"] == (x * 2).ravel().tolist()


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ({"inputs": [{"name": "x", "datatype": "FP32", "dims": [4]}]}, "need max_batch_size"),
        (
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [4], "dims": [4]}]},
            "give one of shape or dims",
        ),
        (
            {
                "max_batch_size": 0,
                "inputs": [{"name": "x", "datatype": "FP32", "dims": [4], "format": "NCWH"}],
            },
            "unknown format",
        ),
        (
            {
                "max_batch_size": 0,
                "inputs": [{"name": "x", "datatype": "FP32", "dims": [4], "label_filename": "l"}],
            },
            "label_filename is for outputs",
        ),
        (
            {
                "max_batch_size": 0,
                "outputs": [
                    {"name": "y", "datatype": "FP32", "dims": [4], "label_filename": "../l"}
                ],
            },
            "a file name in the model folder",
        ),
        (
            {
                "max_batch_size": 0,
                "inputs": [
                    {"name": "x", "datatype": "FP32", "dims": [4], "reshape": {"shape": [3]}}
                ],
            },
            "does not hold the elements",
        ),
    ],
)
def test_bad_triton_fields_are_config_errors(
    tmp_path: Path, yaml: dict[str, object], message: str
) -> None:
    path = tmp_path / "model.yaml"
    path.write_text(pyyaml.safe_dump(yaml))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        read_model_config(path)


def test_dims_become_the_full_shape() -> None:
    batched = ModelConfig.model_validate(
        {"max_batch_size": 4, "inputs": [{"name": "x", "datatype": "FP32", "dims": [3]}]}
    )
    single = ModelConfig.model_validate(
        {"max_batch_size": 0, "inputs": [{"name": "x", "datatype": "FP32", "dims": [3]}]}
    )
    assert batched.inputs is not None and batched.inputs[0].shape == [-1, 3]
    assert single.inputs is not None and single.inputs[0].shape == [3]
