"""A pipeline over the transports: REST (V2 and /predict), gRPC, WebSocket and
tritonclient serve it like any model, and a gRPC client that goes away mid-pipeline takes
its request out of the step queues."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.http as triton_http
from websockets.asyncio.client import connect

from inferd.grpc.protos import grpc_service_pb2 as pb
from inferd.grpc.protos import grpc_service_pb2_grpc as pb_grpc
from inferd.grpc.server import start_grpc
from tests.conftest import NodeFactory, ServerProcess, asgi_client, wait_until
from tests.core.serving.test_pipeline import write_repo


def infer_request(values: list[float]) -> Any:
    return pb.ModelInferRequest(
        model_name="p",
        inputs=[pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, 2])],
        raw_input_contents=[np.array([values], np.float32).tobytes()],
    )


@pytest.fixture
async def grpc_pipeline(
    tmp_path: Path, node_factory: NodeFactory
) -> AsyncIterator[tuple[Any, Any]]:
    node = node_factory(write_repo(tmp_path), server={"grpc_port": 0})
    await node.start()
    server = await start_grpc(node, node.settings)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield node, pb_grpc.GRPCInferenceServiceStub(channel)
    await server.stop(0)


async def test_rest_serves_a_pipeline(tmp_path: Path, node_factory: NodeFactory) -> None:
    repo = write_repo(tmp_path)
    (tmp_path / "open").touch()
    node = node_factory(repo)
    async with await asgi_client(node) as client:
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}
        answer = (await client.post("/v2/models/p/infer", json=body)).json()
        assert [(o["name"], o["data"]) for o in answer["outputs"]] == [
            ("total", [10.0]),
            ("doubled", [4.0, 6.0]),
        ]
        predicted = (await client.post("/models/p/predict", json={"inputs": [1, 2]})).json()
        assert predicted["predictions"] == [10.0]
        config = (await client.get("/v2/models/p/config")).json()
        assert (config["platform"], config["backend"]) == ("ensemble", "pipeline")


async def test_grpc_serves_a_pipeline(tmp_path: Path, grpc_pipeline: tuple[Any, Any]) -> None:
    _, stub = grpc_pipeline
    (tmp_path / "open").touch()
    reply = await stub.ModelInfer(infer_request([1, 2]))
    assert [o.name for o in reply.outputs] == ["total", "doubled"]
    assert np.frombuffer(reply.raw_output_contents[0], np.float32).tolist() == [10.0]
    metadata = await stub.ModelMetadata(pb.ModelMetadataRequest(name="p"))
    assert metadata.platform == "ensemble"
    assert [i.name for i in metadata.inputs] == ["x"]
    stats = await stub.ModelStatistics(pb.ModelStatisticsRequest(name="p"))
    assert stats.model_stats[0].inference_stats.success.count == 1


async def test_a_client_that_goes_away_mid_pipeline(
    tmp_path: Path, grpc_pipeline: tuple[Any, Any]
) -> None:
    """The second call waits at the gate step behind the first; its client cancels it;
    the gate never runs it and the step after it never sees it."""
    node, stub = grpc_pipeline
    first = stub.ModelInfer(infer_request([1, 1]))
    await asyncio.to_thread(wait_until, (tmp_path / "entered").exists, 10, "the first batch")
    second = stub.ModelInfer(infer_request([2, 2]))

    def queued_at_gate() -> bool:
        steps = node.catalog.model_stats("p")["model_stats"][0]["pipeline"]["steps"]
        return bool(steps["first"]["success"]["count"] == 2)

    await asyncio.to_thread(wait_until, queued_at_gate, 10, "the second call at the gate")
    second.cancel()

    def cancelled_there() -> bool:
        steps = node.catalog.model_stats("p")["model_stats"][0]["pipeline"]["steps"]
        return bool(steps["gate"]["fail"]["count"] == 1)

    await asyncio.to_thread(wait_until, cancelled_there, 10, "the cancellation to reach the step")
    (tmp_path / "open").touch()
    reply = await first
    assert np.frombuffer(reply.raw_output_contents[0], np.float32).tolist() == [8.0]
    with pytest.raises(asyncio.CancelledError):
        await second
    assert (tmp_path / "batches").read_text().count("batch") == 1
    assert node.catalog.model_stats("sum")["model_stats"][0]["inference_count"] == 1
    metrics = node.metrics.render().decode()
    assert (
        'inferd_requests_total{model="p",protocol="grpc",status="cancelled",version="1"} 1.0'
        in metrics
    )


async def test_websocket_and_tritonclient_over_a_real_server(tmp_path: Path) -> None:
    repo = write_repo(tmp_path)
    (tmp_path / "open").touch()
    server = ServerProcess(repo)
    try:
        await asyncio.to_thread(server.wait_ready)
        message = {
            "id": "w1",
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}],
        }
        ws_url = server.url.replace("http://", "ws://") + "/v2/models/p/stream"
        async with connect(ws_url) as ws:
            await ws.send(json.dumps(message))
            reply = json.loads(await ws.recv())
        assert reply["id"] == "w1"
        assert [(o["name"], o["data"]) for o in reply["outputs"]] == [
            ("total", [10.0]),
            ("doubled", [4.0, 6.0]),
        ]

        def triton() -> Any:
            client = triton_http.InferenceServerClient(server.url.removeprefix("http://"))
            x = triton_http.InferInput("x", [1, 2], "FP32")
            x.set_data_from_numpy(np.array([[3, 4]], dtype=np.float32))
            return client.infer("p", [x]).as_numpy("total")

        assert (await asyncio.to_thread(triton)).tolist() == [[18.0]]
    finally:
        server.stop()
