"""tritonclient.grpc, with its default arguments, against a real ``inferd serve`` process."""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tritonclient.utils import InferenceServerException

from inferd.example import TINY, WIDE, mlp_reference, mlp_weights
from tests.conftest import ServerProcess
from tests.grpc.conftest import SLOW_S, Served

TINY_WEIGHTS = mlp_weights(TINY, seed=0)
WIDE_WEIGHTS = mlp_weights(WIDE, seed=1)


@pytest.fixture(scope="module")
def client(live_server: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(live_server.grpc_target) as made:
        yield made


def infer_input(x: np.ndarray[Any, Any], name: str = "input", datatype: str = "FP32") -> Any:
    tensor = triton.InferInput(name, list(x.shape), datatype)
    tensor.set_data_from_numpy(x)
    return tensor


def still_serving(client: triton.InferenceServerClient) -> None:
    x = np.ones((1, 4), dtype=np.float32)
    result = client.infer("tiny", [infer_input(x)])
    np.testing.assert_allclose(
        result.as_numpy("output"), mlp_reference(TINY_WEIGHTS, x), rtol=1e-5, atol=1e-6
    )


def test_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("tiny")
    assert client.is_model_ready("wide", "1")
    assert client.get_server_metadata().name == "inferd"
    metadata = client.get_model_metadata("wide", as_json=True)
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "256"]}]
    assert metadata["outputs"] == [{"name": "output", "datatype": "FP32", "shape": ["-1", "16"]}]


def test_model_config(client: triton.InferenceServerClient) -> None:
    config = client.get_model_config("wide").config
    assert (config.name, config.platform, config.backend, config.max_batch_size) == (
        "wide",
        "onnxruntime_onnx",
        "onnx",
        64,
    )
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        ("input", triton.model_config_pb2.TYPE_FP32, [256])
    ]
    assert [(o.name, list(o.dims)) for o in config.output] == [("output", [16])]


@pytest.mark.parametrize(
    ("model", "weights", "width"), [("tiny", TINY_WEIGHTS, 4), ("wide", WIDE_WEIGHTS, 256)]
)
def test_infer_matches_the_reference(
    client: triton.InferenceServerClient, model: str, weights: Any, width: int
) -> None:
    x = np.random.default_rng(7).standard_normal((3, width)).astype(np.float32)
    result = client.infer(model, [infer_input(x)], request_id="abc")
    assert result.get_response().id == "abc"
    np.testing.assert_allclose(
        result.as_numpy("output"), mlp_reference(weights, x), rtol=1e-4, atol=1e-5
    )


def test_statistics_and_repository_index(client: triton.InferenceServerClient) -> None:
    still_serving(client)
    stats = client.get_inference_statistics("tiny").model_stats
    assert stats[0].name == "tiny"
    assert stats[0].inference_stats.success.count >= 1
    with pytest.raises(InferenceServerException) as refused:  # no admin key configured
        client.get_model_repository_index()
    assert refused.value.status() == "StatusCode.PERMISSION_DENIED"


def test_stream_answers_every_request_in_order(client: triton.InferenceServerClient) -> None:
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    rng = np.random.default_rng(3)
    rows = [rng.standard_normal((1, 4)).astype(np.float32) for _ in range(100)]
    bad_at = 50
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for n, row in enumerate(rows):
            x = np.zeros((1, 5), np.float32) if n == bad_at else row
            client.async_stream_infer("tiny", [infer_input(x)], request_id=str(n))
    finally:
        client.stop_stream()
    received = [answers.get(timeout=30) for _ in rows]
    for n, (result, error) in enumerate(received):
        if n == bad_at:
            assert result is None
            assert "expected shape [-1, 4], got [1, 5]" in error.message()
            continue
        assert error is None
        assert result.get_response().id == str(n)
        np.testing.assert_allclose(
            result.as_numpy("output"), mlp_reference(TINY_WEIGHTS, rows[n]), rtol=1e-5, atol=1e-6
        )


@pytest.mark.parametrize(
    ("model", "inputs", "status"),
    [
        ("nope", [infer_input(np.zeros((1, 4), np.float32))], "StatusCode.NOT_FOUND"),
        ("tiny", [infer_input(np.zeros((1, 4), np.int32), datatype="INT32")], "INVALID_ARGUMENT"),
        ("tiny", [infer_input(np.zeros((1, 5), np.float32))], "StatusCode.INVALID_ARGUMENT"),
        ("tiny", [infer_input(np.zeros((1, 4), np.float32), "x")], "StatusCode.INVALID_ARGUMENT"),
    ],
)
def test_bad_requests_leave_the_server_serving(
    client: triton.InferenceServerClient, model: str, inputs: list[Any], status: str
) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.infer(model, inputs)
    assert status in str(caught.value.status())
    still_serving(client)


async def test_client_timeout_is_a_deadline(served: Served) -> None:
    """tritonclient's ``client_timeout`` travels as the call's deadline: a call to a model
    that takes SLOW_S cannot answer within SLOW_S / 5, so it ends DEADLINE_EXCEEDED, and
    the server serves the next call."""

    def call(timeout: float | None) -> Any:
        with triton.InferenceServerClient(f"127.0.0.1:{served.server.port}") as client:
            x = np.full((1, 1), 2.0, np.float32)
            return client.infer("slow", [infer_input(x, "x")], client_timeout=timeout)

    with pytest.raises(InferenceServerException) as caught:
        await asyncio.to_thread(call, SLOW_S / 5)
    assert "DEADLINE_EXCEEDED" in str(caught.value.status())
    assert (await asyncio.to_thread(call, None)).as_numpy("y").tolist() == [[2.0]]


def test_standard_health_and_reflection(live_server: ServerProcess) -> None:
    with grpc.insecure_channel(live_server.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        [answer] = list(reflection.ServerReflectionInfo(iter([request]), timeout=10))
        names = {s.name for s in answer.list_services_response.service}
        assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= names
