"""inferd.client over gRPC against a real server: every datatype in raw contents, sync
and async, retries on RESOURCE_EXHAUSTED, deadlines, request ids, x-cache, streams."""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path

import numpy as np
import pytest

from inferd.client import NO_RETRY, AsyncGrpcClient, GrpcClient
from inferd.errors import DeadlineExceeded, InvalidArgument, NotFound, ResourceExhausted
from tests.client.conftest import identity_inputs
from tests.client.test_http import (
    QUEUE_FULL,
    assert_same,
    fill_queue,
    in_process,
    metric,
    open_gate,
)
from tests.conftest import ServerProcess, wait_until

BF16 = {"in_BF16": "BF16"}


def test_every_datatype_round_trips(client_server: ServerProcess, client_repo: Path) -> None:
    inputs = identity_inputs()
    with GrpcClient(client_server.grpc_target) as client:
        result = client.infer("identity", inputs, datatypes=BF16, request_id="g-1")
    assert (result.model, result.version, result.request_id) == ("identity", "1", "g-1")
    assert_same(result, in_process(client_repo, inputs))


async def test_every_datatype_round_trips_async(
    client_server: ServerProcess, client_repo: Path
) -> None:
    inputs = identity_inputs()
    async with AsyncGrpcClient(client_server.grpc_target) as client:
        result = await client.infer("identity", inputs, datatypes=BF16, version="1")
    assert_same(result, in_process(client_repo, inputs))


def test_cache_outputs_and_refusals(client_server: ServerProcess) -> None:
    x = np.array([[3.0, 4.0]], dtype=np.float32)
    with GrpcClient(client_server.grpc_target) as client:
        assert client.live() and client.ready()
        first = client.infer("cached", {"in_x": x})
        second = client.infer("cached", {"in_x": x}, outputs=["out_x"])
        assert (first.cache, second.cache) == ("miss", "hit")
        with pytest.raises(NotFound, match="NOT_FOUND"):
            client.infer("nope", {"x": x})
        with pytest.raises(InvalidArgument, match="raw contents"):
            client.infer("cached", {"in_x": x}, binary=False)


def test_resource_exhausted_is_retried_after_retry_after(
    client_server: ServerProcess, client_repo: Path
) -> None:
    url, x = client_server.url, {"x": np.ones(1, np.float32)}
    with (
        concurrent.futures.ThreadPoolExecutor(3) as pool,
        GrpcClient(client_server.grpc_target) as client,
        GrpcClient(client_server.grpc_target, retry=NO_RETRY) as no_retry,
    ):
        blockers = fill_queue(url, client_repo, pool)
        with pytest.raises(ResourceExhausted, match="RESOURCE_EXHAUSTED") as refused:
            no_retry.infer("gated", x)
        assert refused.value.retry_after_s == 1
        open_gate(client_repo, blockers)

        blockers = fill_queue(url, client_repo, pool)
        before = metric(url, QUEUE_FULL)
        started = time.monotonic()
        call = pool.submit(client.infer, "gated", x)
        wait_until(lambda: metric(url, QUEUE_FULL) == before + 1, what="the refusal")
        open_gate(client_repo, blockers)
        result = call.result()
        waited = time.monotonic() - started
    assert result["y"].tolist() == [1.0]
    assert metric(url, QUEUE_FULL) == before + 1
    assert waited >= 1.0


def test_a_deadline_is_honoured(client_server: ServerProcess) -> None:
    with GrpcClient(client_server.grpc_target) as client:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            client.infer("slow", {"x": np.ones(1, np.float32)}, timeout_s=0.1)
        assert time.monotonic() - started < 0.59


def test_stream_iterates_partials(client_server: ServerProcess) -> None:
    with GrpcClient(client_server.grpc_target) as client:
        parts = list(client.stream("words", {"text_input": np.array(["one two three"])}))
        single = list(client.stream("cached", {"in_x": np.ones((1, 2), np.float32)}))
    assert [p["text_output"].tolist() for p in parts] == [[b"one"], [b"two"], [b"three"]]
    assert [p.final for p in parts] == [False, False, False]
    assert len(single) == 1 and single[0].final


async def test_async_stream_iterates_partials(client_server: ServerProcess) -> None:
    async with AsyncGrpcClient(client_server.grpc_target) as client:
        parts = [p async for p in client.stream("words", {"text_input": np.array(["a b"])})]
    assert [p["text_output"].tolist() for p in parts] == [[b"a"], [b"b"]]
