"""Idle streams, health watchers and ping floods against a real server's gRPC port."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from inferd.example import TINY, mlp_reference, mlp_weights
from inferd.grpc.protos import grpc_service_pb2 as pb
from inferd.grpc.protos import grpc_service_pb2_grpc as pb_grpc
from tests.abuse.conftest import FIGURES, LIMITS, Requester, assert_probe_fast, probing
from tests.conftest import ServerProcess, until

MAX_RPCS = LIMITS["grpc"]["max_concurrent_rpcs"]
MAX_WATCHERS = LIMITS["grpc"]["max_health_watchers"]
SERVING = health_pb2.HealthCheckResponse.SERVING
QUEUE_FULL = re.compile(r"model 'tiny' has \d+ requests queued; retry later")


def infer_request() -> Any:
    tensor = pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[1, 4])
    return pb.ModelInferRequest(
        model_name="tiny",
        inputs=[tensor],
        raw_input_contents=[np.ones((1, 4), dtype=np.float32).tobytes()],
    )


async def test_streams_past_the_call_limit_are_refused_and_the_limit_frees(
    abuse_server: ServerProcess, probe: Requester
) -> None:
    silent = asyncio.Event()

    async def nothing() -> AsyncIterator[Any]:
        await silent.wait()
        return
        yield  # an async generator that sends no request

    extra = 30
    async with grpc.aio.insecure_channel(abuse_server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        calls = [stub.ModelStreamInfer(nothing()) for _ in range(MAX_RPCS + extra)]
        await until(lambda: sum(c.done() for c in calls) >= extra, 10, "refused streams")
        refused = [c for c in calls if c.done()]
        assert len(refused) == extra
        assert {await c.code() for c in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ModelInfer(infer_request())
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        for call in calls:
            call.cancel()

        async def answered() -> bool:
            try:
                await stub.ModelInfer(infer_request())
            except grpc.aio.AioRpcError:
                return False
            return True

        await until(answered, 10, "calls to be answered once the streams closed")
    assert_probe_fast(probe)


async def test_health_watchers_past_the_limit_are_refused(
    abuse_server: ServerProcess, probe: Requester
) -> None:
    extra = 150
    async with grpc.aio.insecure_channel(abuse_server.grpc_target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        calls = [
            stub.Watch(health_pb2.HealthCheckRequest(service=""))
            for _ in range(MAX_WATCHERS + extra)
        ]
        outcomes = await asyncio.gather(*(c.read() for c in calls), return_exceptions=True)
        served = [o for o in outcomes if not isinstance(o, BaseException)]
        refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
        assert len(served) == MAX_WATCHERS
        assert {o.status for o in served} == {SERVING}
        assert len(refused) == extra
        assert {o.code() for o in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        for call in calls:
            call.cancel()
    assert_probe_fast(probe)


async def test_a_client_pinging_too_often_is_sent_away(
    abuse_server: ServerProcess, probe: Requester
) -> None:
    options = [
        ("grpc.keepalive_time_ms", 20),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    async with grpc.aio.insecure_channel(abuse_server.grpc_target, options=options) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await watch.read()).status == SERVING
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await asyncio.wait_for(watch.read(), 30)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert caught.value.details() == "Too many pings"
    assert_probe_fast(probe)


async def test_2000_calls_at_once_on_one_channel_are_all_answered_by_inferd(
    live_server: ServerProcess,
) -> None:
    # Default limits: 2,000 calls stay under max_concurrent_rpcs (2,048), and the backlog
    # grpc core keeps before the server picks calls up is sized from it, so none is
    # cancelled there (docs/limits.md, "Where 2,000 concurrent calls lost 7-10 %"). Every
    # call is answered by inferd: served, or refused by the model's queue (256 waiting by
    # default; how many depends on how fast the model runs on this machine at the time),
    # with the queue's own message.
    with probing(live_server) as probe:
        async with grpc.aio.insecure_channel(live_server.grpc_target) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            outcomes = await asyncio.gather(
                *(stub.ModelInfer(infer_request()) for _ in range(2000)), return_exceptions=True
            )
        refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
        served = [o for o in outcomes if isinstance(o, pb.ModelInferResponse)]
        assert len(served) + len(refused) == 2000
        wrong = [
            (o.code(), o.details())
            for o in refused
            if o.code() != grpc.StatusCode.RESOURCE_EXHAUSTED
            or not QUEUE_FULL.fullmatch(o.details() or "")
        ]
        assert wrong == []
        expected = mlp_reference(mlp_weights(TINY, seed=0), np.ones((1, 4), dtype=np.float32))
        for answer in served:
            got = np.frombuffer(answer.raw_output_contents[0], dtype=np.float32)
            np.testing.assert_allclose(got.reshape(1, 2), expected, rtol=1e-5)
        FIGURES.append(f"2,000 gRPC calls at once: {len(served)} served, {len(refused)} refused")
        assert_probe_fast(probe)
