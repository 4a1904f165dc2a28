"""The standard health service and server reflection, in-process."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from inferd.grpc.server import SERVICE_NAMES
from tests.grpc.conftest import Served

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def check(served: Served, service: str = "") -> Any:
    stub = health_pb2_grpc.HealthStub(served.channel)
    return (await stub.Check(health_pb2.HealthCheckRequest(service=service))).status


async def test_health_follows_readiness(serve: Callable[..., Any]) -> None:
    served = await serve(start=False)
    assert await check(served) == NOT_SERVING
    await served.service.start()
    assert await check(served) == SERVING
    assert await check(served, "inference.GRPCInferenceService") == SERVING
    assert await check(served, "inferd.simple.InferenceService") == SERVING
    await served.service.stop()
    assert await check(served) == NOT_SERVING


async def test_health_of_an_unknown_service(served: Served) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await check(served, "no.such.Service")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_health_watch_sends_the_current_status(served: Served) -> None:
    stub = health_pb2_grpc.HealthStub(served.channel)
    call = stub.Watch(health_pb2.HealthCheckRequest(service=""))
    assert (await call.read()).status == SERVING
    call.cancel()
    unknown = stub.Watch(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert (await unknown.read()).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
    unknown.cancel()


async def reflect(served: Served, request: Any) -> Any:
    stub = reflection_pb2_grpc.ServerReflectionStub(served.channel)
    [reply] = [r async for r in stub.ServerReflectionInfo(iter([request]))]
    return reply


async def test_reflection_lists_every_service(served: Served) -> None:
    reply = await reflect(served, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {s.name for s in reply.list_services_response.service}
    assert names == set(SERVICE_NAMES)
    assert {
        "inference.GRPCInferenceService",
        "inferd.simple.InferenceService",
        "grpc.health.v1.Health",
    } <= names


@pytest.mark.parametrize(
    ("symbol", "file"),
    [
        ("inference.GRPCInferenceService", "grpc_service.proto"),
        ("inference.ModelConfig", "model_config.proto"),
        ("inferd.simple.InferenceService", "simple.proto"),
        ("grpc.health.v1.Health", "grpc_health/v1/health.proto"),
    ],
)
async def test_reflection_describes_a_symbol(served: Served, symbol: str, file: str) -> None:
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
    reply = await reflect(served, request)
    protos = reply.file_descriptor_response.file_descriptor_proto
    assert protos, reply
    first = descriptor_pb2.FileDescriptorProto.FromString(protos[0])
    assert first.name == file


async def test_health_watch_is_told_of_a_change(served: Served) -> None:
    stub = health_pb2_grpc.HealthStub(served.channel)
    call = stub.Watch(health_pb2.HealthCheckRequest(service=""))
    assert (await call.read()).status == SERVING
    await served.service.drain(0)
    assert (await asyncio.wait_for(call.read(), 10)).status == NOT_SERVING
    call.cancel()


async def test_health_watchers_are_bounded(serve: Callable[..., Any]) -> None:
    served = await serve(limits={"grpc": {"max_health_watchers": 2}})
    stub = health_pb2_grpc.HealthStub(served.channel)
    watching = [stub.Watch(health_pb2.HealthCheckRequest(service="")) for _ in range(2)]
    for call in watching:
        assert (await call.read()).status == SERVING
    refused = stub.Watch(health_pb2.HealthCheckRequest(service=""))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await refused.read()
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    watching[0].cancel()
    # The slot is given back once the server sees the cancellation.
    for _ in range(100):
        again = stub.Watch(health_pb2.HealthCheckRequest(service=""))
        try:
            assert (await again.read()).status == SERVING
            break
        except grpc.aio.AioRpcError:
            await asyncio.sleep(0.02)
    else:
        raise AssertionError("the cancelled watcher's slot never came back")
    again.cancel()
    watching[1].cancel()
