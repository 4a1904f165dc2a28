"""Requests that do not parse: INVALID_ARGUMENT with a short message, never UNKNOWN."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest

from inferd.grpc.protos import grpc_service_pb2 as pb
from inferd.grpc.protos import simple_pb2
from tests.grpc.conftest import Served
from tests.grpc.test_servicer import assert_serving, tiny_request

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
    good = simple_pb2.PredictRequest(inputs=[1.0, 2.0, 3.0, 4.0]).SerializeToString()
    answers = [
        simple_pb2.PredictResponse.FromString(raw)
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
