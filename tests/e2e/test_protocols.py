"""One request, every protocol: REST JSON, REST binary, gRPC and WebSocket answer the same
numbers, equal bit for bit to the model run in-process through its runtime."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import websockets
import yaml

from inferd.core.store.model_config import ModelConfig
from inferd.core.store.versions import runtime_options
from inferd.example import TINY, WIDE
from inferd.runtimes.base import runtime_class
from tests.conftest import ServerProcess

Array = np.ndarray[Any, Any]
#: model -> (runtime, artifact file, layer sizes) in the example repository.
MODELS = {
    "tiny": ("torchscript", "model.pt", TINY),
    "tiny-tf": ("tensorflow", "model.savedmodel", TINY),
    "wide": ("onnx", "model.onnx", WIDE),
}


def rows(model: str) -> Array:
    """Three float32 rows (exactly representable in JSON, so no protocol rounds them)."""
    width = MODELS[model][2][0]
    return np.random.default_rng(7).standard_normal((3, width)).astype(np.float32)


def in_process(example_repo: Path, model: str, x: Array) -> Array:
    kind, artifact, _ = MODELS[model]
    folder = example_repo / model
    config = ModelConfig.model_validate(yaml.safe_load((folder / "model.yaml").read_text()) or {})
    runtime = runtime_class(kind)(runtime_options(config, folder / "1" / artifact))
    runtime.load()
    try:
        return runtime.infer({"input": x})["output"]
    finally:
        runtime.unload()


def rest_json(server: ServerProcess, model: str, x: Array) -> Array:
    body = {
        "inputs": [
            {"name": "input", "datatype": "FP32", "shape": list(x.shape), "data": x.tolist()}
        ]
    }
    answer = httpx.post(f"{server.url}/v2/models/{model}/infer", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    output = answer.json()["outputs"][0]
    return np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])


def rest_binary(server: ServerProcess, model: str, x: Array) -> Array:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": list(x.shape),
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    answer = httpx.post(
        f"{server.url}/v2/models/{model}/infer",
        content=header + x.tobytes(),
        headers={
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(header)),
        },
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    split = int(answer.headers["inference-header-content-length"])
    output = json.loads(answer.content[:split])["outputs"][0]
    assert output["parameters"]["binary_data_size"] == len(answer.content) - split
    return np.frombuffer(answer.content[split:], dtype=np.float32).reshape(output["shape"])


def grpc(server: ServerProcess, model: str, x: Array) -> Array:
    with triton_grpc.InferenceServerClient(server.grpc_target) as client:
        tensor = triton_grpc.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer(model, [tensor])
    output: Array = result.as_numpy("output")
    return output


def websocket(server: ServerProcess, model: str, x: Array) -> Array:
    async def exchange() -> dict[str, Any]:
        url = server.url.replace("http://", "ws://") + f"/v2/models/{model}/stream"
        async with websockets.connect(url) as stream:
            tensor = {
                "name": "input",
                "datatype": "FP32",
                "shape": list(x.shape),
                "data": x.tolist(),
            }
            await stream.send(json.dumps({"id": "same", "inputs": [tensor]}))
            answer: dict[str, Any] = json.loads(await asyncio.wait_for(stream.recv(), 30))
            return answer

    answer = asyncio.run(exchange())
    assert answer.get("id") == "same", answer
    output = answer["outputs"][0]
    return np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])


PROTOCOLS: dict[str, Callable[[ServerProcess, str, Array], Array]] = {
    "rest-json": rest_json,
    "rest-binary": rest_binary,
    "grpc": grpc,
    "websocket": websocket,
}


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_every_protocol_answers_the_model_in_process(
    live_server: ServerProcess, example_repo: Path, protocol: str, model: str
) -> None:
    x = rows(model)
    expected = in_process(example_repo, model, x)
    got = PROTOCOLS[protocol](live_server, model, x)
    assert got.dtype == np.float32
    assert got.shape == expected.shape == (3, MODELS[model][2][-1])
    np.testing.assert_array_equal(got, expected)
