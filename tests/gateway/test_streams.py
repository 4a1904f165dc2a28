"""The one stream policy (inferd.gateway.streams): opening a stream counts once, and every
message of a stream of requests counts once more, on WebSocket and gRPC alike."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
from starlette.testclient import TestClient

from inferd.grpc.protos import grpc_service_pb2_grpc as pb_grpc
from inferd.grpc.server import start_grpc
from inferd.http.app import create_app
from tests.conftest import NodeFactory
from tests.grpc.test_servicer import tiny_request

#: The open counts 1, so 3 messages pass and the 4th and 5th are refused.
LIMITED = {"rate_limit": {"enabled": True, "requests_per_minute": 4}}


def test_every_websocket_message_counts(example_repo: Path, node_factory: NodeFactory) -> None:
    node = node_factory(example_repo, models={"default_model": "tiny"}, safeguards=LIMITED)
    with TestClient(create_app(node)) as client:
        client.portal.call(node.start)
        with client.websocket_connect("/predict/stream") as ws:
            answers = []
            for i in range(5):
                ws.send_json({"inputs": [1, 2, 3, 4], "id": str(i)})
                answers.append(ws.receive_json())
    assert [a.get("code") for a in answers] == [None, None, None, 429, 429]
    assert all("requests per minute" in a["error"] for a in answers[3:])
    assert [a["id"] for a in answers] == ["0", "1", "2", "3", "4"]  # the stream went on


async def test_every_grpc_stream_message_counts(
    example_repo: Path, node_factory: NodeFactory
) -> None:
    node = node_factory(example_repo, server={"grpc_port": 0}, safeguards=LIMITED)
    await node.start()
    server = await start_grpc(node, node.settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            requests = [tiny_request(np.zeros((1, 4)), id=str(i)) for i in range(5)]
            replies = [reply async for reply in stub.ModelStreamInfer(iter(requests))]
    finally:
        await server.stop(0)
    errors = [reply.error_message for reply in replies]
    assert errors[:3] == ["", "", ""]
    assert all("requests per minute" in error for error in errors[3:])
    assert [reply.infer_response.id for reply in replies] == ["0", "1", "2", "3", "4"]
