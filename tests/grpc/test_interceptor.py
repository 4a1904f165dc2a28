"""The admission interceptor: peers, request ids in metadata, the access log line."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from inferd.grpc.handlers import model_of
from inferd.grpc.interceptor import client_host
from inferd.grpc.protos import grpc_service_pb2 as pb
from inferd.grpc.protos import simple_pb2 as simple_pb


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("ipv4:127.0.0.1:50001", "127.0.0.1"),
        ("ipv6:[::1]:50001", "::1"),
        ("ipv6:%5B::1%5D:50001", "::1"),
        ("ipv4:10.1.2.3:443", "10.1.2.3"),
        ("unix:/tmp/socket", None),
    ],
)
def test_client_host_of_a_peer(peer: str, host: str | None) -> None:
    assert client_host(peer) == host


async def test_every_call_answers_its_request_id(serve: Callable[..., Any]) -> None:
    served = await serve()
    call = served.infer.ServerLive(pb.ServerLiveRequest(), metadata=(("x-request-id", "g-7"),))
    assert (await call).live
    assert ("x-request-id", "g-7") in tuple(await call.initial_metadata())
    made = served.infer.ServerMetadata(
        pb.ServerMetadataRequest(), metadata=(("x-request-id", "not safe"),)
    )
    await made
    (value,) = [v for k, v in await made.initial_metadata() if k == "x-request-id"]
    assert value != "not safe" and len(value) == 32


async def test_a_refused_stream_never_runs(serve: Callable[..., Any]) -> None:
    served = await serve(server={"require_api_key": True, "admin_token": "t"})
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async for _ in served.infer.ModelStreamInfer(iter([])):
            pass
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "inferd.access"]


def test_the_model_and_version_of_a_request_message() -> None:
    infer = pb.ModelInferRequest(model_name="tiny", model_version="2")
    assert model_of(infer) == ("tiny", "2")
    assert model_of(pb.ModelMetadataRequest(name="tiny")) == ("tiny", None)
    assert model_of(pb.RepositoryModelLoadRequest(model_name="echo")) == ("echo", None)
    assert model_of(simple_pb.PredictRequest(model_version="1")) == (None, "1")
    assert model_of(pb.ServerLiveRequest()) == (None, None)


async def test_the_access_log_names_the_model_and_version_of_a_call(
    serve: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="inferd.access")
    served = await serve(server={"access_log": "plain"})
    request = pb.ModelInferRequest(
        model_name="tiny",
        model_version="1",
        inputs=[pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[1, 4])],
        raw_input_contents=[bytes(16)],
    )
    await served.infer.ModelInfer(request, metadata=(("x-request-id", "g-1"),))
    with pytest.raises(grpc.aio.AioRpcError):
        await served.infer.ModelMetadata(pb.ModelMetadataRequest(name="nope\n"))
    await served.infer.ServerLive(pb.ServerLiveRequest())
    infer, missing, live = access_lines(caplog)
    assert re.fullmatch(
        r"GRPC /inference.GRPCInferenceService/ModelInfer OK [0-9.]+ms "
        r"model=tiny version=1 key=- id=g-1",
        infer,
    )
    assert " NOT_FOUND " in missing and " model=nope\\x0a version=- " in missing
    assert " model=- version=- " in live


async def test_a_streamed_call_names_no_model(
    serve: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="inferd.access")
    served = await serve(server={"access_log": "plain"})
    request = pb.ModelInferRequest(
        model_name="tiny",
        inputs=[pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[1, 4])],
        raw_input_contents=[bytes(16)],
    )
    answers = [a async for a in served.infer.ModelStreamInfer(iter([request]))]
    assert len(answers) == 1
    (line,) = access_lines(caplog)
    assert " model=- version=- " in line
