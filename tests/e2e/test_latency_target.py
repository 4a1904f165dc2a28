"""A latency target's early refusals over the transports: HTTP 503 with Retry-After, gRPC
UNAVAILABLE with retry-after metadata; the limit and predicted wait in stats and metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import orjson

from inferd.grpc.protos import grpc_service_pb2 as pb
from inferd.grpc.protos import grpc_service_pb2_grpc as pb_grpc
from inferd.grpc.server import start_grpc
from tests.conftest import NodeFactory, asgi_client
from tests.core.serving.test_latency import slow_repo

#: 50 ms per one-row batch against a 60 ms target: one request at a time fits, a second
#: one behind it (about 100 ms away) does not.
TARGET_MS = 60
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}


async def test_http_refuses_early_with_503_and_retry_after(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    node = node_factory(slow_repo(tmp_path, TARGET_MS))
    async with await asgi_client(node) as client:
        first = await client.post("/v2/models/slow/infer", json=BODY)  # measured: c(1)
        assert first.status_code == 200
        answers = await asyncio.gather(
            *(client.post("/v2/models/slow/infer", json=BODY) for _ in range(4))
        )
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200, 503, 503, 503]
        refused = next(a for a in answers if a.status_code == 503)
        assert refused.headers["retry-after"] == "1"
        assert "past its latency target of 60 ms; retry later" in refused.json()["error"]
        stats = (await client.get("/v2/models/slow/stats")).json()["model_stats"][0]
        state = stats["latency_target"]
        assert state["target_ms"] == TARGET_MS and state["batch_limit"] == 1
        assert state["refused"] == {"target": 3, "deadline": 0, "queue": 0}
        assert state["predicted_wait_ms"] > 40
        metrics = (await client.get("/metrics")).text
        assert (
            'inferd_early_refusals_total{model="slow",reason="target",version="1"} 3.0' in metrics
        )
        assert 'inferd_batch_limit{model="slow",version="1"} 1.0' in metrics
        assert 'inferd_predicted_wait_seconds{model="slow",version="1"}' in metrics


async def test_http_refuses_before_decoding_the_body(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    """While a request runs, one behind it is refused before its body is read as JSON: a
    body that is not JSON gets the target's 503, not a 400; counted as every 503. With
    nothing running the same body is decoded, and refused as bad input."""
    node = node_factory(slow_repo(tmp_path, TARGET_MS))
    async with await asgi_client(node) as client:
        first = await client.post("/v2/models/slow/infer", json=BODY)  # measured: c(1)
        assert first.status_code == 200
        bad = {"content": b"{not json", "headers": {"content-type": "application/json"}}
        running, refused = await asyncio.gather(
            client.post("/v2/models/slow/infer", json=BODY),
            client.post("/v2/models/slow/infer", **bad),  # type: ignore[arg-type]
        )
        assert (running.status_code, refused.status_code) == (200, 503)
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["x-model-version"] == "1"
        assert "past its latency target of 60 ms" in refused.json()["error"]
        alone = await client.post("/v2/models/slow/infer", **bad)  # type: ignore[arg-type]
        assert alone.status_code == 400
        # What the early check cannot judge is left to the usual path: no such version.
        unknown = await client.post("/v2/models/slow/versions/9/infer", json=BODY)
        assert unknown.status_code == 404
        stats = (await client.get("/v2/models/slow/stats")).json()["model_stats"][0]
        assert stats["latency_target"]["refused"] == {"target": 1, "deadline": 0, "queue": 0}
        metrics = (await client.get("/metrics")).text
        assert (
            'inferd_requests_total{model="slow",protocol="rest",status="unavailable",version="1"}'
            " 1.0" in metrics
        )


async def test_http_answers_are_timed_from_the_front(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    """A body that reaches the server 150 ms after its head: the answer is timed from the
    front, so it is late and its time outside the batcher is counted."""
    node = node_factory(slow_repo(tmp_path, TARGET_MS))

    async def late_body() -> AsyncIterator[bytes]:
        await asyncio.sleep(0.150)  # a slow client, not a wait for a condition
        yield orjson.dumps(BODY)

    async with await asgi_client(node) as client:
        first = await client.post("/v2/models/slow/infer", json=BODY)  # measured: c(1)
        assert first.status_code == 200
        answer = await client.post(
            "/v2/models/slow/infer",
            content=late_body(),
            headers={"content-type": "application/json"},
        )
        assert answer.status_code == 200
        await asyncio.sleep(0)  # timed at the loop's next turn (this client runs in-process)
        stats = (await client.get("/v2/models/slow/stats")).json()["model_stats"][0]
        state = stats["latency_target"]
        assert (state["answers"], state["late"]) == (1, 1)
        # One sample x of 150 ms and more outside: x / 20 plus three deviations of 0.95 x / 20.
        assert state["outside_ms"] >= 0.1925 * 150


def request() -> Any:
    return pb.ModelInferRequest(
        model_name="slow",
        inputs=[pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, 2])],
        raw_input_contents=[np.ones((1, 2), np.float32).tobytes()],
    )


async def test_grpc_refuses_early_with_unavailable(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    node = node_factory(slow_repo(tmp_path, TARGET_MS), server={"grpc_port": 0})
    await node.start()
    server = await start_grpc(node, node.settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            await stub.ModelInfer(request())  # measured: c(1)
            calls = [stub.ModelInfer(request()) for _ in range(4)]
            codes, trailers = [], []
            for call in calls:
                try:
                    await call
                    codes.append(grpc.StatusCode.OK)
                except grpc.aio.AioRpcError as exc:
                    codes.append(exc.code())
                    trailers.append(dict(exc.trailing_metadata() or ()))
                    assert "past its latency target" in (exc.details() or "")
            assert sorted(codes, key=str) == sorted(
                [grpc.StatusCode.OK] + [grpc.StatusCode.UNAVAILABLE] * 3, key=str
            )
            assert all(t.get("retry-after") == "1" for t in trailers)
    finally:
        await server.stop(0)
