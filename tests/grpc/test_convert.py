"""Protobuf <-> core conversion, without a server."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from inferd.core.messages import InferResponse
from inferd.core.store.model_config import VersionPolicy
from inferd.core.store.triton_config import version_policy
from inferd.errors import InvalidArgument
from inferd.grpc import convert
from inferd.grpc.protos import grpc_service_pb2 as pb
from inferd.tensors import from_binary
from inferd.types import Tensor

Input = pb.ModelInferRequest.InferInputTensor


def request(*inputs: Any, raw: list[bytes] | None = None, **fields: Any) -> Any:
    return pb.ModelInferRequest(
        model_name="m", inputs=list(inputs), raw_input_contents=raw or [], **fields
    )


def test_raw_contents_decode_in_input_order() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([[1, -2]], dtype=np.int64)
    message = request(
        Input(name="a", datatype="FP32", shape=[2, 3]),
        Input(name="b", datatype="INT64", shape=[1, 2]),
        raw=[a.tobytes(), b.tobytes()],
        id="r1",
        model_version="2",
    )
    decoded = convert.decode_infer_request(message, deadline=12.5)
    assert [t.name for t in decoded.inputs] == ["a", "b"]
    np.testing.assert_array_equal(decoded.inputs[0].decode(), a)
    np.testing.assert_array_equal(decoded.inputs[1].decode(), b)
    assert (decoded.id, decoded.version, decoded.deadline, decoded.protocol) == (
        "r1",
        "2",
        12.5,
        "grpc",
    )


def test_empty_optional_fields_are_none() -> None:
    message = request(Input(name="a", datatype="FP32", shape=[1]), raw=[b"\0\0\0\0"])
    decoded = convert.decode_infer_request(message, deadline=None)
    assert (decoded.id, decoded.version, decoded.outputs, decoded.parameters) == (
        None,
        None,
        None,
        {},
    )


@pytest.mark.parametrize(
    ("datatype", "field", "values", "dtype"),
    [
        ("FP32", "fp32_contents", [1.5, -2.0], np.float32),
        ("FP64", "fp64_contents", [1.5, -2.0], np.float64),
        ("INT8", "int_contents", [-128, 127], np.int8),
        ("INT16", "int_contents", [-3, 300], np.int16),
        ("INT32", "int_contents", [-3, 70000], np.int32),
        ("INT64", "int64_contents", [-(2**40), 5], np.int64),
        ("UINT8", "uint_contents", [0, 255], np.uint8),
        ("UINT16", "uint_contents", [0, 65535], np.uint16),
        ("UINT32", "uint_contents", [0, 2**32 - 1], np.uint32),
        ("UINT64", "uint64_contents", [0, 2**64 - 1], np.uint64),
        ("BOOL", "bool_contents", [True, False], np.bool_),
    ],
)
def test_typed_contents(datatype: str, field: str, values: list[Any], dtype: Any) -> None:
    tensor = Input(name="x", datatype=datatype, shape=[1, 2])
    getattr(tensor.contents, field).extend(values)
    array = convert.decode_infer_request(request(tensor), None).inputs[0].decode()
    assert array.dtype == np.dtype(dtype)
    assert array.shape == (1, 2)
    assert array.tolist() == [values]


def test_bytes_contents() -> None:
    tensor = Input(name="s", datatype="BYTES", shape=[3])
    tensor.contents.bytes_contents.extend([b"a", b"", b"\xffz"])
    array = convert.decode_infer_request(request(tensor), None).inputs[0].decode()
    assert array.dtype == object
    assert array.tolist() == [b"a", b"", b"\xffz"]


def bad(*inputs: Any, raw: list[bytes] | None = None, **fields: Any) -> str:
    with pytest.raises(InvalidArgument) as caught:
        convert.decode_infer_request(request(*inputs, raw=raw, **fields), None)
    return caught.value.message


def test_decode_errors_name_the_problem() -> None:
    fp32 = Input(name="x", datatype="FP32", shape=[1, 2])
    assert "needs 8 bytes, got 4" in bad(fp32, raw=[b"1234"])
    assert "2 entries for 1 inputs" in bad(fp32, raw=[b"12345678", b""])
    assert "unknown datatype 'FP128'" in bad(Input(name="x", datatype="FP128", shape=[1]))
    assert "input 'x': datatype is required" in bad(Input(name="x", shape=[1]))
    assert "non-negative" in bad(Input(name="x", datatype="FP32", shape=[-1, 2]), raw=[b""])
    assert "needs 2 elements, contents.fp32_contents has 0" in bad(fp32)
    assert "no typed contents field" in bad(Input(name="h", datatype="FP16", shape=[1]))
    assert "inputs[0] needs a non-empty 'name'" in bad(Input(datatype="FP32", shape=[1]))
    both = Input(name="x", datatype="FP32", shape=[1])
    both.contents.fp32_contents.append(1.0)
    assert "not both" in bad(both, raw=[b"\0\0\0\0"])
    narrow = Input(name="i", datatype="INT8", shape=[1])
    narrow.contents.int_contents.append(300)
    with pytest.raises(InvalidArgument, match="out of range for INT8"):
        convert.decode_infer_request(request(narrow), None).inputs[0].decode()
    shared = Input(name="x", datatype="FP32", shape=[1])
    shared.parameters["shared_memory_region"].string_param = "r"
    assert "1 entries for 0 inputs (1 more in shared memory)" in bad(shared, raw=[b"\0\0\0\0"])
    shared.contents.fp32_contents.append(1.0)
    assert "in a shared memory region or in the request, not both" in bad(shared)
    with pytest.raises(InvalidArgument, match="'model_name' is required"):
        convert.decode_infer_request(pb.ModelInferRequest(), None)


def test_a_huge_declared_shape_is_refused_before_allocating() -> None:
    huge = Input(name="x", datatype="FP32", shape=[2**30, 2**10])
    assert "bytes, got 4" in bad(huge, raw=[b"1234"])
    assert "contents.fp32_contents has 0" in bad(huge)
    beyond = Input(name="x", datatype="FP32", shape=[0, 2**62, 2**62])
    assert "is too large" in bad(beyond, raw=[b""])


def test_outputs_and_parameters() -> None:
    message = request(
        Input(name="x", datatype="FP32", shape=[1]),
        raw=[b"\0\0\0\0"],
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="y")],
    )
    message.parameters["timeout"].int64_param = 5000
    message.parameters["flag"].bool_param = True
    message.parameters["ratio"].double_param = 0.5
    message.parameters["tag"].string_param = "t"
    message.parameters["unset"].CopyFrom(pb.InferParameter())
    decoded = convert.decode_infer_request(message, None)
    assert [o.name for o in decoded.outputs or []] == ["y"]
    assert decoded.parameters == {"timeout": 5000, "flag": True, "ratio": 0.5, "tag": "t"}
    message.outputs.add(name="y")
    with pytest.raises(InvalidArgument, match="requested more than once"):
        convert.decode_infer_request(message, None)


def test_encode_puts_every_output_in_raw_contents() -> None:
    floats = np.array([[1.0, 2.0]], dtype=np.float32)
    strings = np.array([b"ab", b"\x00c\xff"], dtype=object)
    response = InferResponse(
        model="m",
        version="3",
        outputs=[Tensor("y", "FP32", floats), Tensor("s", "BYTES", strings)],
        id="r9",
        parameters={"n": 2, "ok": True, "why": "x", "f": 0.25},
    )
    message = convert.encode_infer_response(response)
    assert (message.model_name, message.model_version, message.id) == ("m", "3", "r9")
    assert [(o.name, o.datatype, list(o.shape)) for o in message.outputs] == [
        ("y", "FP32", [1, 2]),
        ("s", "BYTES", [2]),
    ]
    assert not any(o.HasField("contents") for o in message.outputs)
    raw = message.raw_output_contents
    np.testing.assert_array_equal(from_binary("y", "FP32", (1, 2), raw[0]), floats)
    assert raw[1] == b"\x02\x00\x00\x00ab\x03\x00\x00\x00\x00c\xff"
    assert convert.decode_parameters(message.parameters) == {
        "n": 2,
        "ok": True,
        "why": "x",
        "f": 0.25,
    }


def test_model_config_version_policy() -> None:
    policies = [
        VersionPolicy(specific=["1", "v2", "10"]),
        VersionPolicy(all=True),
        VersionPolicy(latest=2),
    ]
    docs = [{"name": "m", "version_policy": version_policy(p)} for p in policies]
    configs = [convert.model_config(doc).config for doc in docs]
    assert list(configs[0].version_policy.specific.versions) == [1, 10]
    assert configs[1].version_policy.WhichOneof("policy_choice") == "all"
    assert configs[2].version_policy.latest.num_versions == 2
