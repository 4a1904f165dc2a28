"""The simple API over gRPC: inferd.simple.InferenceService Predict and PredictStream."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from inferd.example import TINY, mlp_reference, mlp_weights
from inferd.grpc.protos import simple_pb2
from tests.grpc.conftest import Served

TINY_WEIGHTS = mlp_weights(TINY, seed=0)


def expected(row: list[float]) -> list[float]:
    prediction: list[float] = mlp_reference(TINY_WEIGHTS, np.array([row])).reshape(-1).tolist()
    return prediction


async def test_predict_uses_the_default_model(served: Served) -> None:
    row = [0.1, 0.2, 0.3, 0.4]
    response = await served.simple.Predict(simple_pb2.PredictRequest(inputs=row))
    assert response.predictions == pytest.approx(expected(row), rel=1e-5, abs=1e-6)
    assert response.model_version == "1"
    assert response.latency_ms > 0


async def test_predict_a_named_model_and_version(served: Served) -> None:
    request = simple_pb2.PredictRequest(inputs=[2.5], model_name="slow", model_version="1")
    response = await served.simple.Predict(request)
    assert list(response.predictions) == [2.5]


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (simple_pb2.PredictRequest(inputs=[1.0, 2.0]), grpc.StatusCode.INVALID_ARGUMENT),
        (simple_pb2.PredictRequest(), grpc.StatusCode.INVALID_ARGUMENT),
        (simple_pb2.PredictRequest(inputs=[1.0], model_name="nope"), grpc.StatusCode.NOT_FOUND),
        (
            simple_pb2.PredictRequest(inputs=[1.0] * 4, model_version="9"),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            simple_pb2.PredictRequest(inputs=[1.0], model_name="echo"),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ],
)
async def test_predict_errors(
    served: Served, request_: simple_pb2.PredictRequest, code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.simple.Predict(request_)
    assert caught.value.code() == code


async def test_predict_stream_answers_in_order(served: Served) -> None:
    rows = [[float(n), 1.0, -1.0, 0.5] for n in range(20)]
    requests = (simple_pb2.PredictRequest(inputs=row) for row in rows)
    responses = [r async for r in served.simple.PredictStream(requests)]
    assert len(responses) == len(rows)
    for row, response in zip(rows, responses, strict=True):
        assert response.predictions == pytest.approx(expected(row), rel=1e-5, abs=1e-6)


async def test_predict_stream_answers_a_bad_request_and_goes_on(served: Served) -> None:
    rows = [[1.0, 2.0, 3.0, 4.0], [1.0, 2.0], [0.5, 0.5, 0.5, 0.5]]
    requests = (simple_pb2.PredictRequest(inputs=row) for row in rows)
    responses = [r async for r in served.simple.PredictStream(requests)]
    assert len(responses) == 3
    assert responses[1].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "input 'input'" in responses[1].error
    assert list(responses[1].predictions) == []
    for n in (0, 2):
        assert responses[n].error == ""
        assert responses[n].code == 0
        assert responses[n].predictions == pytest.approx(expected(rows[n]), rel=1e-5, abs=1e-6)
