"""The one wrapper of every gRPC method: parsing (a request that does not parse is
INVALID_ARGUMENT with a short message, never UNKNOWN), peers, request ids in metadata,
the access log line, and every method registered through it."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf.descriptor import MethodDescriptor

from inferd.grpc.protos import POOL
from inferd.grpc.protos import grpc_service_pb2 as pb
from inferd.grpc.protos import simple_pb2 as simple_pb
from inferd.grpc.register import client_host, model_of
from inferd.grpc.server import SERVICE_NAMES
from tests.grpc.conftest import Served
from tests.grpc.test_servicer import assert_serving, tiny_request


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
    """A unary answer carries the id in its trailing metadata (with the answer, no write
    of its own); a call that streams its answers, in its initial metadata."""
    served = await serve()
    call = served.infer.ServerLive(pb.ServerLiveRequest(), metadata=(("x-request-id", "g-7"),))
    assert (await call).live
    assert ("x-request-id", "g-7") in tuple(await call.trailing_metadata())
    assert "x-request-id" not in dict(await call.initial_metadata())
    made = served.infer.ServerMetadata(
        pb.ServerMetadataRequest(), metadata=(("x-request-id", "not safe"),)
    )
    await made
    (value,) = [v for k, v in await made.trailing_metadata() if k == "x-request-id"]
    assert value != "not safe" and len(value) == 32
    stream = served.infer.ModelStreamInfer(iter([]), metadata=(("x-request-id", "g-8"),))
    assert ("x-request-id", "g-8") in tuple(await stream.initial_metadata())


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


# -- parse ---------------------------------------------------------------------------------

INVALID = grpc.StatusCode.INVALID_ARGUMENT
#: Bytes that are no protobuf message: a field 1 of wire type 2 whose length runs past the end.
MALFORMED = b"\x0a\xff\xff\xff\xff\x0f" + b"x" * 10


def raw_unary(channel: Any, method: str) -> Any:
    return channel.unary_unary(method, request_serializer=None, response_deserializer=None)


@pytest.mark.parametrize(
    "method",
    [
        "/inference.GRPCInferenceService/ModelInfer",
        "/inference.GRPCInferenceService/ModelMetadata",
        "/inferd.simple.InferenceService/Predict",
    ],
)
async def test_a_malformed_message_is_invalid_argument(served: Served, method: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await raw_unary(served.channel, method)(MALFORMED)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("malformed request: not a valid ")
    await assert_serving(served)


async def test_a_malformed_stream_message_is_answered_in_its_turn(served: Served) -> None:
    call = served.channel.stream_stream(
        "/inference.GRPCInferenceService/ModelStreamInfer",
        request_serializer=None,
        response_deserializer=pb.ModelStreamInferResponse.FromString,
    )
    good = tiny_request(np.ones((1, 4), dtype=np.float32)).SerializeToString()
    answers = [answer async for answer in call(iter([good, MALFORMED, good]))]
    assert [a.error_message for a in answers] == [
        "",
        "malformed request: not a valid inference.ModelInferRequest message",
        "",
    ]
    assert answers[2].infer_response.model_name == "tiny"


async def test_a_malformed_simple_stream_message_is_answered_and_the_stream_goes_on(
    served: Served,
) -> None:
    call = served.channel.stream_stream(
        "/inferd.simple.InferenceService/PredictStream",
        request_serializer=None,
        response_deserializer=None,
    )
    good = simple_pb.PredictRequest(inputs=[1.0, 2.0, 3.0, 4.0]).SerializeToString()
    answers = [
        simple_pb.PredictResponse.FromString(raw)
        async for raw in call(iter([good, MALFORMED, good]))
    ]
    assert [bool(a.predictions) for a in answers] == [True, False, True]
    assert answers[1].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "inferd.simple.PredictRequest" in answers[1].error


async def test_a_well_formed_raw_message_is_served(served: Served) -> None:
    request = tiny_request(np.ones((1, 4), dtype=np.float32))
    raw = await raw_unary(served.channel, "/inference.GRPCInferenceService/ModelInfer")(
        request.SerializeToString()
    )
    assert pb.ModelInferResponse.FromString(raw).model_name == "tiny"


# -- registration ----------------------------------------------------------------------------


def served_methods() -> list[MethodDescriptor]:
    """Every method of every service the server answers, as its descriptor defines them."""
    return [m for name in SERVICE_NAMES for m in POOL.FindServiceByName(name).methods]


async def test_every_method_of_every_service_passes_the_one_wrapper(
    serve: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Each method sends the call's request id back, answers a message that does not parse
    in its own request type's name, and writes one access log line."""
    caplog.set_level("INFO", logger="inferd.access")
    served = await serve(server={"access_log": "plain", "admin_token": "t"})
    paths = []
    for method in served_methods():
        path = f"/{method.containing_service.full_name}/{method.name}"
        paths.append(path)
        metadata = (("x-request-id", f"every-{len(paths)}"), ("authorization", "Bearer t"))
        malformed = f"malformed request: not a valid {method.input_type.full_name} message"
        call: Any
        if method.client_streaming:  # the stream answers the message in its turn
            call = served.channel.stream_stream(path)(iter([MALFORMED]), metadata=metadata)
            assert len([answer async for answer in call]) == 1, path
            assert await call.code() == grpc.StatusCode.OK, path
        elif method.server_streaming:
            call = served.channel.unary_stream(path)(MALFORMED, metadata=metadata)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                [answer async for answer in call]
            assert (caught.value.code(), caught.value.details()) == (INVALID, malformed)
        else:
            call = raw_unary(served.channel, path)(MALFORMED, metadata=metadata)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert (caught.value.code(), caught.value.details()) == (INVALID, malformed)
        answered = (
            await call.initial_metadata()
            if method.server_streaming
            else await call.trailing_metadata()
        )
        assert metadata[0] in tuple(answered), path
    assert len(paths) == 20
    assert [line.split()[1] for line in access_lines(caplog)] == paths
