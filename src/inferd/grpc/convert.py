"""Protobuf <-> core messages, done once, here.

Tensor data goes through numpy: raw contents with ``tensors.binary_tensor``/``to_binary``,
typed contents with one ``np.fromiter`` per tensor (Python touches each element only for
BYTES). Every size is checked against the declared shape before anything proportional
to that shape is allocated; elements are decoded only once the core has compared the
header with the model's declaration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeAlias

import numpy as np
from google.protobuf import json_format
from google.protobuf.internal.containers import MessageMap

from inferd.core.catalog import ModelMetadata, ServerMetadata
from inferd.core.messages import InferRequest, InferResponse, InputTensor, RequestedOutput
from inferd.core.serving import shm
from inferd.errors import InvalidArgument, clip
from inferd.gateway import requestid, routingkey
from inferd.grpc.protos import grpc_service_pb2 as pb
from inferd.tensors import (
    WireTensor,
    binary_tensor,
    check_datatype,
    check_shape,
    element_count,
    to_binary,
)
from inferd.types import DATATYPE_TO_NUMPY, Tensor

#: V2 datatype -> the InferTensorContents field that carries it. FP16 and BF16 have none.
CONTENTS_FIELD: Final[dict[str, str]] = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

#: InferTensorContents field -> the numpy dtype of its wire values.
FIELD_DTYPE: Final[dict[str, np.dtype[Any]]] = {
    "bool_contents": np.dtype(np.bool_),
    "uint_contents": np.dtype(np.uint32),
    "uint64_contents": np.dtype(np.uint64),
    "int_contents": np.dtype(np.int32),
    "int64_contents": np.dtype(np.int64),
    "fp32_contents": np.dtype(np.float32),
    "fp64_contents": np.dtype(np.float64),
}

#: A parameter's value, as an InferParameter holds it.
Parameter: TypeAlias = bool | int | float | str
#: A message's ``map<string, InferParameter>``.
Parameters: TypeAlias = MessageMap[str, pb.InferParameter]

#: Python type of a parameter value -> the InferParameter field that holds it.
PARAMETER_FIELD: Final[dict[type, str]] = {
    bool: "bool_param",
    int: "int64_param",
    float: "double_param",
    str: "string_param",
}


# -- parameters ------------------------------------------------------------------------------


def decode_parameters(entries: Mapping[str, pb.InferParameter]) -> dict[str, Parameter]:
    """``map<string, InferParameter>`` -> plain values (unset entries are left out)."""
    decoded: dict[str, Parameter] = {}
    for key, value in entries.items():
        field = value.WhichOneof("parameter_choice")
        if field is not None:
            decoded[key] = getattr(value, field)
    return decoded


def encode_parameters(values: Mapping[str, object], target: Parameters) -> None:
    """Plain values -> ``map<string, InferParameter>``; other types travel as strings."""
    for key, value in values.items():
        field = PARAMETER_FIELD.get(type(value), "string_param")
        setattr(target[key], field, value if field != "string_param" else str(value))


# -- ModelInfer --------------------------------------------------------------------------------


def decode_infer_request(message: pb.ModelInferRequest, deadline: float | None) -> InferRequest:
    """A ModelInferRequest as the core's InferRequest (``deadline``: absolute monotonic)."""
    if not message.model_name:
        raise InvalidArgument("'model_name' is required")
    raw = message.raw_input_contents
    # Inputs in a shared memory region have no raw contents; the others have theirs, in order.
    local = [t for t in message.inputs if shm.REGION not in t.parameters]
    if raw and len(raw) != len(local):
        shared = len(message.inputs) - len(local)
        raise InvalidArgument(
            f"raw_input_contents has {len(raw)} entries for {len(local)} inputs"
            + (f" ({shared} more in shared memory)" if shared else "")
            + "; send one per input, in the order of inputs"
        )
    given = iter(raw)
    inputs: list[InputTensor] = [
        _decode_input(t, i, next(given) if raw and shm.REGION not in t.parameters else None)
        for i, t in enumerate(message.inputs)
    ]
    outputs = _decode_outputs(message.outputs)
    shared = len(local) != len(inputs) or any(
        shm.REGION in o.parameters for o in outputs or () if o.parameters
    )
    return InferRequest(
        model=message.model_name,
        version=message.model_version or None,
        id=message.id or None,
        inputs=inputs,
        outputs=outputs,
        parameters=decode_parameters(message.parameters),
        deadline=deadline,
        protocol="grpc",
        request_id=requestid.current.get(),
        routing_key=routingkey.current.get(),
        shared_memory=shared,
    )


def _decode_input(
    tensor: pb.ModelInferRequest.InferInputTensor, index: int, raw: bytes | None
) -> WireTensor:
    name = tensor.name
    if not name:
        raise InvalidArgument(f"inputs[{index}] needs a non-empty 'name'")
    datatype = check_datatype(name, tensor.datatype)
    shape = check_shape(name, list(tensor.shape))
    parameters = decode_parameters(tensor.parameters)
    if shm.REGION in parameters:
        if tensor.HasField("contents"):
            raise InvalidArgument(
                f"input '{clip(name)}': give its data in a shared memory region or in the "
                "request, not both"
            )
        return shm.shared_input(name, datatype, shape, parameters)
    if raw is None:
        wire = _contents_tensor(name, datatype, shape, tensor.contents)
    elif tensor.HasField("contents"):
        raise InvalidArgument(
            f"input '{clip(name)}': give its data in raw_input_contents or in contents, not both"
        )
    else:
        wire = binary_tensor(name, datatype, shape, raw)
    wire.parameters = parameters
    return wire


def _contents_tensor(
    name: str, datatype: str, shape: tuple[int, ...], contents: pb.InferTensorContents
) -> WireTensor:
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidArgument(
            f"input '{clip(name)}': {datatype} has no typed contents field; send it in "
            "raw_input_contents"
        )
    values: Sequence[bool | int | float | bytes] = getattr(contents, field)
    count = element_count(shape)
    if len(values) != count:
        raise InvalidArgument(
            f"input '{clip(name)}': shape {list(shape)} needs {count} elements, "
            f"contents.{field} has {len(values)}"
        )
    return WireTensor(
        name,
        datatype,
        shape,
        lambda: _from_contents(name, datatype, shape, field, values),
        cost=count,
    )


def _from_contents(
    name: str,
    datatype: str,
    shape: tuple[int, ...],
    field: str,
    values: Sequence[bool | int | float | bytes],
) -> np.ndarray[Any, Any]:
    count = element_count(shape)
    if datatype == "BYTES":
        out = np.empty(count, dtype=object)
        out[:] = list(values)
        return out.reshape(shape)
    array = np.fromiter(values, dtype=FIELD_DTYPE[field], count=count)
    target = DATATYPE_TO_NUMPY[datatype]
    if array.dtype != target:
        # int32/uint32 fields carry the 8- and 16-bit types: refuse what does not fit.
        info = np.iinfo(target)
        if count and (array.min() < info.min or array.max() > info.max):
            raise InvalidArgument(
                f"input '{clip(name)}': value out of range for {datatype} [{info.min}, {info.max}]"
            )
        array = array.astype(target)
    return array.reshape(shape)


def _decode_outputs(
    outputs: Sequence[pb.ModelInferRequest.InferRequestedOutputTensor],
) -> list[RequestedOutput] | None:
    if not outputs:
        return None
    requested = []
    seen = set()
    for index, output in enumerate(outputs):
        if not output.name:
            raise InvalidArgument(f"outputs[{index}] needs a non-empty 'name'")
        if output.name in seen:
            raise InvalidArgument(f"output '{clip(output.name)}' is requested more than once")
        seen.add(output.name)
        requested.append(RequestedOutput(output.name, decode_parameters(output.parameters)))
    return requested


def encode_infer_response(response: InferResponse) -> pb.ModelInferResponse:
    """The core's InferResponse as a ModelInferResponse; data always in raw contents."""
    message = pb.ModelInferResponse(
        model_name=response.model,
        model_version=response.version,
        id=response.id or "",
        outputs=[
            pb.ModelInferResponse.InferOutputTensor(
                name=tensor.name, datatype=tensor.datatype, shape=tensor.data.shape
            )
            for tensor in response.outputs
        ],
        raw_output_contents=[_raw(t, response) for t in response.outputs],
    )
    for tensor, output in zip(response.outputs, message.outputs, strict=True):
        if tensor.parameters:
            encode_parameters(tensor.parameters, output.parameters)
    if response.parameters:
        encode_parameters(response.parameters, message.parameters)
    return message


def _raw(tensor: Tensor, response: InferResponse) -> bytes:
    """An output's raw contents; empty for one written to shared memory (core/serving/shm.py)."""
    if shm.REGION in response.output_parameters.get(tensor.name, ()):
        return b""
    return to_binary(tensor.datatype, tensor.data)


# -- metadata, configuration, statistics, repository -------------------------------------------


def server_metadata(meta: ServerMetadata) -> pb.ServerMetadataResponse:
    return pb.ServerMetadataResponse(
        name=meta.name, version=meta.version, extensions=list(meta.extensions)
    )


def model_metadata(meta: ModelMetadata) -> pb.ModelMetadataResponse:
    tensor = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(
        name=meta.name,
        versions=list(meta.versions),
        platform=meta.platform,
        inputs=[tensor(name=s.name, datatype=s.datatype, shape=list(s.shape)) for s in meta.inputs],
        outputs=[
            tensor(name=s.name, datatype=s.datatype, shape=list(s.shape)) for s in meta.outputs
        ],
    )


def model_config(doc: dict[str, Any]) -> pb.ModelConfigResponse:
    """The core's configuration (Triton's JSON form) as a ModelConfigResponse."""
    response = pb.ModelConfigResponse()
    json_format.ParseDict(doc, response.config)
    return response


def model_statistics(doc: dict[str, Any]) -> pb.ModelStatisticsResponse:
    return json_format.ParseDict(doc, pb.ModelStatisticsResponse(), ignore_unknown_fields=True)


def repository_index(rows: list[dict[str, str]]) -> pb.RepositoryIndexResponse:
    return pb.RepositoryIndexResponse(
        models=[pb.RepositoryIndexResponse.ModelIndex(**row) for row in rows]
    )
