"""The client's V2 REST body in-process: what it writes is what the server's decoder reads,
and what the server's encoder writes is what it reads back."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import inferd.client
from inferd.client.codec import decode_response, encode_request, tensors
from inferd.core.messages import InferResponse
from inferd.errors import InvalidArgument
from inferd.http.codec import (
    HEADER_LENGTH,
    decode_document,
    encode_response,
    parse_json,
    split_body,
)
from inferd.types import Tensor


def test_the_public_api() -> None:
    assert set(inferd.client.__all__) == {
        "NO_RETRY",
        "AsyncClient",
        "AsyncGrpcClient",
        "Client",
        "GrpcClient",
        "InferResult",
        "Retry",
    }


@pytest.mark.parametrize("binary", [True, False])
def test_the_server_reads_what_the_client_writes(binary: bool) -> None:
    inputs: dict[str, Any] = {
        "a": np.arange(6, dtype=np.int16).reshape(2, 3),
        "b": np.array(["x", "yz"]),
        "c": np.array([1.5, -2.0], np.float32),
    }
    body, headers = encode_request(tensors(inputs, {"c": "BF16"}), None, binary, {"k": 1})
    # The server's steps, as http/v2.py takes them: split, parse the JSON, decode.
    header, binary = split_body(body, headers.get(HEADER_LENGTH))
    request = decode_document(parse_json(header), binary, "m", None)
    decoded = {t.name: (t.datatype, t.decode()) for t in request.inputs}
    assert decoded["a"][0] == "INT16" and decoded["a"][1].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert decoded["b"][0] == "BYTES" and decoded["b"][1].tolist() == [b"x", b"yz"]
    assert decoded["c"][0] == "BF16" and decoded["c"][1].tolist() == [1.5, -2.0]
    assert request.parameters == ({"k": 1, "binary_data_output": True} if binary else {"k": 1})


def test_the_client_reads_what_the_server_writes() -> None:
    y = np.array([[1.0, np.nan]], np.float32)
    response = InferResponse(
        "m", "3", [Tensor("y", "FP32", y), Tensor("s", "BYTES", np.array([b"ok"], dtype=object))]
    )
    for binary in (True, False):
        payload, length = encode_response(response, binary)
        result = decode_response(payload, None if length is None else str(length), "r-1", "hit")
        assert (result.model, result.version, result.request_id, result.cache) == (
            "m",
            "3",
            "r-1",
            "hit",
        )
        np.testing.assert_array_equal(result["y"], y)
        assert result["s"].tolist() == [b"ok"]


def test_inputs_are_checked_before_sending() -> None:
    with pytest.raises(InvalidArgument, match="at least one input"):
        tensors({})
    with pytest.raises(InvalidArgument, match="not given"):
        tensors({"a": np.ones(1)}, {"b": "FP32"})
    with pytest.raises(InvalidArgument, match="unknown datatype"):
        tensors({"a": np.ones(1)}, {"a": "FP8"})
    with pytest.raises(InvalidArgument, match="has no V2 datatype"):
        tensors({"a": np.ones(1, np.complex64)})
