"""The standard health service and server reflection, in-process."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from inferd.grpc.server import SERVICE_NAMES
from tests.conftest import until
from tests.grpc.conftest import Served
from tests.grpc.test_register import MALFORMED

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def check(served: Served, service: str = "") -> Any:
    stub = health_pb2_grpc.HealthStub(served.channel)
    return (await stub.Check(health_pb2.HealthCheckRequest(service=service))).status


async def test_health_follows_readiness(serve: Callable[..., Any]) -> None:
    served = await serve(start=False)
    assert await check(served) == NOT_SERVING
    await served.node.start()
    assert await check(served) == SERVING
    assert await check(served, "inference.GRPCInferenceService") == SERVING
    assert await check(served, "inferd.simple.InferenceService") == SERVING
    await served.node.stop()
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
        ("grpc.health.v1.Health", "health.proto"),
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
    await served.node.drain(0)
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
    tries = []

    async def watched() -> bool:
        tries.append(stub.Watch(health_pb2.HealthCheckRequest(service="")))
        try:
            status = (await tries[-1].read()).status
        except grpc.aio.AioRpcError:
            return False
        assert status == SERVING
        return True

    await until(watched, 10, "the cancelled watcher's slot to come back")
    tries[-1].cancel()
    watching[1].cancel()


async def test_reflection_sends_a_file_with_its_dependencies(served: Served) -> None:
    request = reflection_pb2.ServerReflectionRequest(file_by_filename="grpc_service.proto")
    reply = await reflect(served, request)
    protos = reply.file_descriptor_response.file_descriptor_proto
    names = [descriptor_pb2.FileDescriptorProto.FromString(p).name for p in protos]
    assert names == ["grpc_service.proto", "model_config.proto"]
    assert reply.original_request == request


async def test_reflection_of_an_unknown_name_answers_not_found(served: Served) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(served.channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="no.such.Symbol"),
        reflection_pb2.ServerReflectionRequest(list_services=""),
    ]
    unknown, listed = [r async for r in stub.ServerReflectionInfo(iter(requests))]
    assert unknown.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
    assert unknown.error_response.error_message == "file_containing_symbol: not found"
    # The stream goes on after the error.
    assert len(listed.list_services_response.service) == len(SERVICE_NAMES)


async def test_reflection_lists_extension_numbers(served: Served) -> None:
    request = reflection_pb2.ServerReflectionRequest(
        all_extension_numbers_of_type="inference.ModelConfig"
    )
    reply = await reflect(served, request)
    assert reply.all_extension_numbers_response.base_type_name == "inference.ModelConfig"
    assert list(reply.all_extension_numbers_response.extension_number) == []


async def test_grpc_reflection_client_rebuilds_the_services(served: Served) -> None:
    # grpcio-reflection's own client: a descriptor pool fed by the server's answers.
    def describe(target: str) -> list[str]:
        with grpc.insecure_channel(target) as channel:
            pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
            service = pool.FindServiceByName("inference.GRPCInferenceService")
            return [method.name for method in service.methods]

    methods = await asyncio.to_thread(describe, f"127.0.0.1:{served.server.port}")
    assert {"ServerLive", "ModelInfer", "ModelStreamInfer", "ModelConfig"} <= set(methods)


async def test_reflection_of_an_extension_nothing_declares_answers_not_found(
    served: Served,
) -> None:
    wanted = reflection_pb2.ExtensionRequest(
        containing_type="inference.ModelConfig", extension_number=100
    )
    reply = await reflect(
        served, reflection_pb2.ServerReflectionRequest(file_containing_extension=wanted)
    )
    assert reply.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
    assert reply.error_response.error_message == "file_containing_extension: not found"
    assert reply.original_request.file_containing_extension == wanted


async def test_reflection_answers_a_message_that_does_not_parse_and_goes_on(
    served: Served,
) -> None:
    call = served.channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=None,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    listing = reflection_pb2.ServerReflectionRequest(list_services="").SerializeToString()
    malformed, listed = [r async for r in call(iter([MALFORMED, listing]))]
    assert malformed.error_response.error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert malformed.error_response.error_message == (
        "malformed request: not a valid grpc.reflection.v1alpha.ServerReflectionRequest message"
    )
    assert len(listed.list_services_response.service) == len(SERVICE_NAMES)
