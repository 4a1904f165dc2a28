"""The KServe Python SDK's checks, run in a process of their own by test_kserve_sdk.py.

``kserve`` and ``tritonclient.grpc`` each register Triton's ``grpc_service.proto`` in
protobuf's default descriptor pool, so the two cannot be imported into one process (the
second import fails with "duplicate symbol 'inference.ServerLiveRequest'"); the test suite
imports tritonclient. Usage: ``python -m tests.e2e.kserve_client URL GRPC_TARGET``; prints
a JSON object: check name -> "ok" or what failed.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import traceback
from collections.abc import Callable
from typing import Any

import grpc
import httpx
import numpy as np
import orjson
import pytest
from kserve import (
    InferenceGRPCClient,
    InferenceRESTClient,
    InferInput,
    InferRequest,
    InferResponse,
    RESTConfig,
)
from kserve.protocol.infer_type import RequestedOutput

A = np.arange(8, dtype=np.float32).reshape(2, 4)
B = np.full((2, 4), 0.5, dtype=np.float32)
WORDS = np.array([[b"kserve", b"\xc3\xa9t\xc3\xa9"]], dtype=object)


class Server:
    """Where the server under test listens (what the checks read of a ServerProcess)."""

    def __init__(self, url: str, grpc_target: str) -> None:
        self.url = url
        self.grpc_target = grpc_target


def add_sub_request(binary: bool, request_id: str | None = None) -> InferRequest:
    inputs = [InferInput("INPUT0", [2, 4], "FP32"), InferInput("INPUT1", [2, 4], "FP32")]
    inputs[0].set_data_from_numpy(A, binary_data=binary)
    inputs[1].set_data_from_numpy(B, binary_data=binary)
    outputs = [RequestedOutput(n, {"binary_data": binary}) for n in ("OUTPUT0", "OUTPUT1")]
    return InferRequest("add_sub", inputs, request_id=request_id, request_outputs=outputs)


def echo_request(binary: bool) -> InferRequest:
    tensor = InferInput("INPUT0", list(WORDS.shape), "BYTES")
    tensor.set_data_from_numpy(WORDS, binary_data=binary)
    return InferRequest(
        "echo", [tensor], request_outputs=[RequestedOutput("OUTPUT0", {"binary_data": binary})]
    )


def outputs(response: InferResponse) -> dict[str, np.ndarray]:
    return {o.name: o.as_numpy() for o in response.outputs}


async def rest_fp32(server: Server, binary: bool) -> None:
    client = InferenceRESTClient(RESTConfig(protocol="v2"))
    response = await client.infer(server.url, add_sub_request(binary, "req-7"), "add_sub")
    assert response.id == "req-7"
    assert response.model_name == "add_sub"
    got = outputs(response)
    np.testing.assert_array_equal(got["OUTPUT0"], A + B)
    np.testing.assert_array_equal(got["OUTPUT1"], A - B)


async def rest_bytes(server: Server, binary: bool) -> None:
    client = InferenceRESTClient(RESTConfig(protocol="v2"))
    response = await client.infer(server.url, echo_request(binary), "echo")
    assert response.id  # the SDK's own id (it always sends one)
    got = outputs(response)["OUTPUT0"]
    # The SDK gives JSON strings back as str, binary ones as bytes.
    assert [[w if isinstance(w, bytes) else w.encode() for w in row] for row in got.tolist()] == (
        WORDS.tolist()
    )


async def rest_unknown_model(server: Server) -> None:
    client = InferenceRESTClient(RESTConfig(protocol="v2"))
    request = add_sub_request(False)
    request.model_name = "nope"
    with pytest.raises(httpx.HTTPStatusError) as caught:
        await client.infer(server.url, request, "nope")
    assert caught.value.response.status_code == 404
    assert "nope" in caught.value.response.json()["error"]


async def rest_model_name_must_match_the_url(server: Server) -> None:
    client = InferenceRESTClient(RESTConfig(protocol="v2"))
    with pytest.raises(httpx.HTTPStatusError) as caught:
        await client.infer(server.url, add_sub_request(False), "echo")
    assert caught.value.response.status_code == 400
    assert "does not match the URL's model 'echo'" in caught.value.response.json()["error"]


async def rest_answer_without_a_request_id_carries_one(server: Server) -> None:
    body = {
        "inputs": [
            {"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]},
            {"name": "INPUT1", "datatype": "FP32", "shape": [1, 4], "data": [1, 1, 1, 1]},
        ]
    }
    answer = httpx.post(
        f"{server.url}/v2/models/add_sub/infer", json=body, headers={"x-request-id": "abc-1"}
    )
    assert answer.status_code == 200
    assert answer.json()["id"] == "abc-1"
    response = InferResponse.from_rest(answer.json())
    np.testing.assert_array_equal(response.outputs[0].as_numpy(), [[2, 3, 4, 5]])


async def grpc_infer(server: Server, model: str) -> None:
    client = InferenceGRPCClient(server.grpc_target)
    try:
        assert await client.is_server_ready()
        assert await client.is_model_ready(model)
        if model == "add_sub":
            response = await client.infer(add_sub_request(True, "g-1"))
            assert response.id == "g-1"
            np.testing.assert_array_equal(outputs(response)["OUTPUT0"], A + B)
        else:
            response = await client.infer(echo_request(True))
            assert response.id  # the SDK's id, else the server's request id
            assert outputs(response)["OUTPUT0"].tolist() == WORDS.tolist()
    finally:
        await client.close()


async def grpc_unknown_model(server: Server) -> None:
    client = InferenceGRPCClient(server.grpc_target)
    request = add_sub_request(True)
    request.model_name = "nope"
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.infer(request)
    finally:
        await client.close()
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert "nope" in (caught.value.details() or "")


#: check name -> (function, arguments after the server).
CHECKS: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = {
    "rest_fp32_json": (rest_fp32, (False,)),
    "rest_fp32_binary": (rest_fp32, (True,)),
    "rest_bytes_json": (rest_bytes, (False,)),
    "rest_bytes_binary": (rest_bytes, (True,)),
    "rest_unknown_model": (rest_unknown_model, ()),
    "rest_model_name_must_match_the_url": (rest_model_name_must_match_the_url, ()),
    "rest_answer_without_a_request_id_carries_one": (
        rest_answer_without_a_request_id_carries_one,
        (),
    ),
    "grpc_fp32": (grpc_infer, ("add_sub",)),
    "grpc_bytes": (grpc_infer, ("echo",)),
    "grpc_unknown_model": (grpc_unknown_model, ()),
}


def run(server: Server) -> dict[str, str]:
    results = {}
    for name, (check, args) in CHECKS.items():
        try:
            outcome = check(server, *args)
            if inspect.iscoroutine(outcome):
                asyncio.run(outcome)
            results[name] = "ok"
        except BaseException:
            results[name] = traceback.format_exc(limit=3)
    return results


if __name__ == "__main__":
    sys.stdout.write(orjson.dumps(run(Server(sys.argv[1], sys.argv[2]))).decode())
