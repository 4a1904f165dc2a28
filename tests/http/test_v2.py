"""Open Inference Protocol REST routes, in-process over the ASGI app."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from google.protobuf import json_format

from inferd.example import TINY, WIDE, mlp_reference, mlp_weights
from inferd.gateway.keys import Scope, new_key
from inferd.grpc.protos import model_config_pb2
from tests.conftest import NodeFactory, asgi_client

TINY_W = mlp_weights(TINY, seed=0)
WIDE_W = mlp_weights(WIDE, seed=1)


def infer_body(x: np.ndarray, **extra: object) -> dict[str, object]:
    return {
        "inputs": [
            {
                "name": "input",
                "shape": list(x.shape),
                "datatype": "FP32",
                "data": x.ravel().tolist(),
            }
        ],
        **extra,
    }


async def test_server_metadata_and_health(example_client: httpx.AsyncClient) -> None:
    meta = (await example_client.get("/v2")).json()
    assert meta["name"] == "inferd"
    assert "binary_tensor_data" in meta["extensions"]
    assert (await example_client.get("/v2/health/live")).status_code == 200
    assert (await example_client.get("/v2/health/ready")).status_code == 200
    assert (await example_client.get("/healthz")).json() == {"status": "ok"}
    ready = await example_client.get("/ready")
    assert ready.status_code == 200
    assert {m["name"] for m in ready.json()["models"]} == {
        "sentiment",
        "tiny",
        "tiny-tf",
        "wide",
        "words",
    }


async def test_model_metadata(example_client: httpx.AsyncClient) -> None:
    meta = (await example_client.get("/v2/models/wide")).json()
    assert meta == {
        "name": "wide",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 256]}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 16]}],
    }
    assert (await example_client.get("/v2/models/tiny/versions/1")).json()["versions"] == ["1"]
    assert (await example_client.get("/v2/models/tiny/ready")).json() == {
        "name": "tiny",
        "ready": True,
    }
    assert (await example_client.get("/v2/models/tiny/versions/1/ready")).json() == {
        "name": "tiny",
        "ready": True,
    }


async def test_model_config_is_triton_shaped(example_client: httpx.AsyncClient) -> None:
    config = (await example_client.get("/v2/models/tiny/config")).json()
    assert config["name"] == "tiny"
    assert config["platform"] == "pytorch_libtorch"
    assert config["max_batch_size"] == 32
    assert config["input"] == [{"name": "input", "data_type": "TYPE_FP32", "dims": [4]}]
    assert config["output"] == [{"name": "output", "data_type": "TYPE_FP32", "dims": [2]}]
    wide = (await example_client.get("/v2/models/wide/versions/1/config")).json()
    assert wide["max_batch_size"] == 64
    for doc in (config, wide):  # Triton's own message, field for field (unknown ones fail)
        parsed = json_format.ParseDict(doc, model_config_pb2.ModelConfig())
        assert (
            json_format.MessageToDict(parsed, preserving_proto_field_name=True)["name"]
            == (doc["name"])
        )


async def test_infer_json(example_client: httpx.AsyncClient) -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    response = await example_client.post("/v2/models/tiny/infer", json=infer_body(x, id="req-7"))
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["id"] == "req-7"
    assert doc["model_name"] == "tiny"
    assert doc["model_version"] == "1"
    (output,) = doc["outputs"]
    assert output["name"] == "output" and output["datatype"] == "FP32" and output["shape"] == [2, 2]
    np.testing.assert_allclose(
        np.array(output["data"]).reshape(2, 2), mlp_reference(TINY_W, x), rtol=1e-5
    )


async def test_infer_nested_data(example_client: httpx.AsyncClient) -> None:
    x = np.ones((2, 4), dtype=np.float32)
    body = {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": x.tolist()}]}
    response = await example_client.post("/v2/models/tiny/versions/1/infer", json=body)
    assert response.status_code == 200, response.text
    doc = response.json()
    assert (doc["model_name"], doc["model_version"]) == ("tiny", "1")
    (output,) = doc["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("output", "FP32", [2, 2])
    np.testing.assert_allclose(
        np.array(output["data"]).reshape(2, 2), mlp_reference(TINY_W, x), rtol=1e-5
    )


async def test_infer_binary_both_ways(example_client: httpx.AsyncClient) -> None:
    x = np.random.default_rng(0).standard_normal((3, 256), dtype=np.float32)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [3, 256],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": [{"name": "output", "parameters": {"binary_data": True}}],
        }
    ).encode()
    response = await example_client.post(
        "/v2/models/wide/infer",
        content=header + x.tobytes(),
        headers={
            "Inference-Header-Content-Length": str(len(header)),
            "Content-Type": "application/octet-stream",
        },
    )
    assert response.status_code == 200, response.text
    split = int(response.headers["Inference-Header-Content-Length"])
    doc = json.loads(response.content[:split])
    size = doc["outputs"][0]["parameters"]["binary_data_size"]
    assert size == 3 * 16 * 4
    out = np.frombuffer(response.content[split : split + size], dtype="<f4").reshape(3, 16)
    np.testing.assert_allclose(out, mlp_reference(WIDE_W, x), rtol=1e-4, atol=1e-4)


async def test_binary_output_for_every_output_by_request_parameter(
    example_client: httpx.AsyncClient,
) -> None:
    x = np.ones((1, 4), dtype=np.float32)
    body = infer_body(x, parameters={"binary_data_output": True})
    response = await example_client.post("/v2/models/tiny/infer", json=body)
    assert "Inference-Header-Content-Length" in response.headers
    split = int(response.headers["Inference-Header-Content-Length"])
    assert len(response.content) - split == 8


async def test_requested_outputs(example_client: httpx.AsyncClient) -> None:
    x = np.ones((1, 4), dtype=np.float32)
    ok = await example_client.post(
        "/v2/models/tiny/infer", json=infer_body(x, outputs=[{"name": "output"}])
    )
    assert [o["name"] for o in ok.json()["outputs"]] == ["output"]
    bad = await example_client.post(
        "/v2/models/tiny/infer", json=infer_body(x, outputs=[{"name": "logits"}])
    )
    assert bad.status_code == 400
    assert "unknown output 'logits'" in bad.json()["error"]


async def test_stats(example_client: httpx.AsyncClient) -> None:
    x = np.ones((2, 4), dtype=np.float32)
    await example_client.post("/v2/models/tiny/infer", json=infer_body(x))
    stats = (await example_client.get("/v2/models/tiny/stats")).json()["model_stats"]
    assert stats[0]["name"] == "tiny"
    assert stats[0]["inference_count"] >= 2
    assert stats[0]["inference_stats"]["success"]["count"] >= 1
    everything = (await example_client.get("/v2/models/stats")).json()["model_stats"]
    assert {s["name"] for s in everything} == {"sentiment", "tiny", "tiny-tf", "wide", "words"}


async def test_metrics(example_client: httpx.AsyncClient) -> None:
    x = np.ones((1, 4), dtype=np.float32)
    await example_client.post("/v2/models/tiny/infer", json=infer_body(x))
    await example_client.post("/v2/models/tiny/infer", json={"inputs": []})
    text = (await example_client.get("/metrics")).text
    assert 'inferd_requests_total{model="tiny",protocol="rest",status="ok",version="1"} 1.0' in text
    assert "inferd_request_duration_seconds_bucket" in text


async def test_openapi_documents_every_route(example_client: httpx.AsyncClient) -> None:
    paths = (await example_client.get("/openapi.json")).json()["paths"]
    for path in [
        "/v2/models/{model}/infer",
        "/predict",
        "/models/{model}/predict",
        "/v2/health/ready",
        "/metrics",
    ]:
        assert path in paths
    assert (await example_client.get("/docs")).status_code == 200


ADMIN_KEY, ADMIN_ENTRY = new_key("ops", Scope.ADMIN)
AS_ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


async def test_repository_index_load_unload(example_repo: Path, node_factory: NodeFactory) -> None:
    node = node_factory(example_repo, server={"api_keys": [ADMIN_ENTRY.line()]})
    async with await asgi_client(node) as client:
        index = (await client.post("/v2/repository/index", headers=AS_ADMIN)).json()
        assert {(r["name"], r["state"]) for r in index} == {
            ("sentiment", "READY"),
            ("tiny", "READY"),
            ("tiny-tf", "READY"),
            ("wide", "READY"),
            ("words", "READY"),
        }
        unload = await client.post("/v2/repository/models/wide/unload", headers=AS_ADMIN)
        assert unload.status_code == 200
        assert (await client.get("/v2/models/wide/ready")).status_code == 503
        after = await client.post("/v2/repository/index", json={"ready": True}, headers=AS_ADMIN)
        assert [r["name"] for r in after.json()] == ["sentiment", "tiny", "tiny-tf", "words"]
        # An explicitly unloaded model does not hold server readiness down.
        assert (await client.get("/v2/health/ready")).status_code == 200
        load = await client.post("/v2/repository/models/wide/load", headers=AS_ADMIN)
        assert load.status_code == 200
        assert (await client.get("/v2/models/wide/ready")).status_code == 200
        missing = await client.post("/v2/repository/models/nothing/load", headers=AS_ADMIN)
        assert missing.status_code == 404


@pytest.mark.parametrize(
    ("header", "status"),
    [(None, 401), ("Bearer wrong", 401), ("Basic czNjcmV0", 401), ("Bearer s3cret", 200)],
)
async def test_the_admin_token_is_an_admin_key(
    example_repo: Path, node_factory: NodeFactory, header: str | None, status: int
) -> None:
    node = node_factory(example_repo, server={"admin_token": "s3cret"})
    async with await asgi_client(node) as client:
        headers = {"Authorization": header} if header else {}
        response = await client.post("/v2/repository/models/tiny/load", headers=headers)
        assert response.status_code == status


@pytest.mark.parametrize(
    ("path", "extra", "status", "message"),
    [
        ("/v2/models/tiny/infer", {"model_name": "tiny"}, 200, None),
        (
            "/v2/models/tiny/versions/1/infer",
            {"model_name": "tiny", "model_version": "1"},
            200,
            None,
        ),
        ("/v2/models/tiny/infer", {"model_version": ""}, 200, None),
        ("/v2/models/tiny/infer", {"model_name": "wide"}, 400, "model_name 'wide' does not match"),
        ("/v2/models/tiny/infer", {"model_version": "1"}, 400, "the URL's no version"),
        ("/v2/models/tiny/versions/1/infer", {"model_version": "2"}, 400, "URL's version '1'"),
    ],
)
async def test_body_may_repeat_the_urls_model(
    example_client: httpx.AsyncClient,
    path: str,
    extra: dict[str, object],
    status: int,
    message: str | None,
) -> None:
    x = np.ones((1, 4), dtype=np.float32)
    answer = await example_client.post(path, json=infer_body(x, **extra))
    assert answer.status_code == status, answer.text
    if message is not None:
        assert message in answer.json()["error"]


async def test_answer_carries_the_request_id_when_the_body_has_none(
    example_client: httpx.AsyncClient,
) -> None:
    x = np.ones((1, 4), dtype=np.float32)
    answer = await example_client.post(
        "/v2/models/tiny/infer", json=infer_body(x), headers={"x-request-id": "rid-42"}
    )
    assert answer.json()["id"] == "rid-42"
    given = await example_client.post("/v2/models/tiny/infer", json=infer_body(x, id="mine"))
    assert given.json()["id"] == "mine"


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"priority": 1}, "request parameter(s) ['priority'] are not supported"),
        ({"sequence_id": 7}, "model 'tiny' does not batch sequences"),
    ],
)
async def test_request_parameters_inferd_does_not_act_on_are_refused(
    example_client: httpx.AsyncClient, parameters: dict[str, object], message: str
) -> None:
    x = np.ones((1, 4), dtype=np.float32)
    answer = await example_client.post(
        "/v2/models/tiny/infer", json=infer_body(x, parameters=parameters)
    )
    assert answer.status_code == 400
    assert message in answer.json()["error"]
