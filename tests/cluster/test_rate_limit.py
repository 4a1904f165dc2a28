"""Three inferd processes sharing one real Redis for their rate limits.

Request N+1 is refused by whichever process gets it, over REST, gRPC and WebSocket. Then
Redis dies: each process answers per its failure mode (two fail closed, one open), within
100 ms.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from inferd.grpc.protos import grpc_service_pb2 as pb
from inferd.grpc.protos import grpc_service_pb2_grpc as pb_grpc
from tests.conftest import RedisServer, ServerProcess
from tests.grpc.test_servicer import tiny_request

LIMIT = 6
ROW = {"inputs": [1.0, 2.0, 3.0, 4.0]}
#: How long a process may take to answer once Redis is gone.
BOUND_S = 0.1


@pytest.fixture(scope="module")
def tiny_repo(example_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny-only")
    shutil.copytree(example_repo / "tiny", root / "tiny")
    return root


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def servers(tiny_repo: Path, redis: RedisServer) -> Iterator[list[ServerProcess]]:
    """Three processes, one Redis: the first two fail closed, the third fails open."""
    started = []
    for mode in ("closed", "closed", "open"):
        env = {
            "INFERENCE_SAFEGUARDS__RATE_LIMIT__ENABLED": "true",
            "INFERENCE_SAFEGUARDS__RATE_LIMIT__REQUESTS_PER_MINUTE": str(LIMIT),
            # Exact over any 60 s, so the test does not depend on where a minute starts.
            "INFERENCE_SAFEGUARDS__RATE_LIMIT__STRATEGY": "moving-window",
            "INFERENCE_SAFEGUARDS__RATE_LIMIT__FAILURE_MODE": mode,
            "INFERENCE_STORAGE__REDIS_URI": redis.uri,
        }
        started.append(ServerProcess(tiny_repo, "--default-model", "tiny", env=env))
    try:
        for server in started:
            server.wait_ready()
        yield started
    finally:
        for server in started:
            server.stop()


async def test_the_limit_holds_across_processes_then_redis_dies(
    servers: list[ServerProcess], redis: RedisServer
) -> None:
    for i in range(LIMIT):  # spread over the three processes
        answer = httpx.post(f"{servers[i % 3].url}/predict", json=ROW)
        assert answer.status_code == 200, answer.text
    for server in servers:  # request N+1, on any of them
        refused = httpx.post(f"{server.url}/predict", json=ROW)
        assert refused.status_code == 429
        assert refused.headers["ratelimit-limit"] == str(LIMIT)
        assert refused.headers["ratelimit-remaining"] == "0"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
    async with grpc.aio.insecure_channel(servers[1].grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ModelInfer(tiny_request(np.zeros((1, 4))))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        metadata = dict(tuple(caught.value.trailing_metadata() or ()))
        assert metadata["ratelimit-limit"] == str(LIMIT)
        assert (await stub.ServerLive(pb.ServerLiveRequest())).live  # probes are not limited
    ws_url = servers[2].url.replace("http://", "ws://") + "/predict/stream"
    with pytest.raises(InvalidStatus) as handshake:  # opening a stream counts as a request
        async with connect(ws_url):
            pass
    assert handshake.value.response.status_code == 429

    # Kept-alive connections, opened before Redis dies: the time measured is the server's.
    clients = [httpx.Client(base_url=server.url) for server in servers]
    for http in clients:
        assert http.get("/healthz").status_code == 200
    redis.stop()
    for http, status in zip(clients, (503, 503, 200), strict=True):
        for _ in range(3):
            started = time.monotonic()
            answer = http.post("/predict", json=ROW)
            took = time.monotonic() - started
            assert answer.status_code == status, answer.text
            assert took < BOUND_S, f"{took * 1000:.0f} ms"
        if status == 503:
            assert answer.json()["error"] == "rate limit storage unreachable; request refused"
        http.close()
    metrics = httpx.get(f"{servers[2].url}/metrics").text
    assert 'inferd_rate_limit_storage_failures_total{outcome="admitted"} 3.0' in metrics
