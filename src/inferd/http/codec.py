"""The Open Inference Protocol's REST body: JSON with optional binary tensor data.

With the binary tensor data extension the body is a JSON header of
``Inference-Header-Content-Length`` bytes followed by the raw tensors, in input order,
each ``parameters.binary_data_size`` long.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from inferd.core.messages import InferRequest, InferResponse, InputTensor, RequestedOutput
from inferd.core.serving import shm
from inferd.errors import InvalidArgument, clip
from inferd.gateway import routingkey
from inferd.tensors import (
    WireTensor,
    binary_tensor,
    check_datatype,
    check_shape,
    json_tensor,
    to_binary,
    to_json_data,
)

#: ``model_name``/``model_version`` repeat the URL's (the KServe SDK always sends the name).
REQUEST_FIELDS: Final = frozenset(
    {"id", "parameters", "inputs", "outputs", "model_name", "model_version"}
)
INPUT_FIELDS: Final = frozenset({"name", "shape", "datatype", "parameters", "data"})
OUTPUT_FIELDS: Final = frozenset({"name", "parameters"})
HEADER_LENGTH: Final = "inference-header-content-length"


def parse_json(raw: bytes | memoryview | str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"malformed JSON: {clip(str(exc), 200)}") from None


def _object(value: Any, what: str, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what} must be a JSON object")
    if allowed.issuperset(value):
        return value
    unknown = value.keys() - allowed
    if unknown:
        raise InvalidArgument(
            f"unknown field(s) {clip(sorted(unknown))} in {what}; expected {sorted(allowed)}"
        )
    return value


def _parameters(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what} 'parameters' must be a JSON object")
    for key, item in value.items():
        if not isinstance(item, bool | int | float | str):
            raise InvalidArgument(
                f"{what} parameter '{clip(key)}' must be a bool, number or string"
            )
    return value


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{what} needs a non-empty string 'name'")
    return value


def split_body(body: bytes, header_length: str | None) -> tuple[memoryview, memoryview]:
    """A V2 REST infer body as its JSON and the binary tensors that follow it."""
    view = memoryview(body)
    if header_length is not None:
        try:
            split = int(header_length)
        except ValueError:
            raise InvalidArgument(
                f"Inference-Header-Content-Length {clip(repr(header_length))} is not a number"
            ) from None
        if not 0 < split <= len(body):
            raise InvalidArgument(
                f"Inference-Header-Content-Length {split} is outside the body of {len(body)} bytes"
            )
        return view[:split], view[split:]
    return view, view[len(body) :]


def decode_document(
    doc: Any, binary: memoryview, model: str, version: str | None, protocol: str = "rest"
) -> InferRequest:
    """Decode a parsed V2 infer request; ``binary`` holds the tensors that follow its JSON."""
    doc = _object(doc, "the request", REQUEST_FIELDS)
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidArgument("'id' must be a string")
    if "model_name" in doc or "model_version" in doc:
        _agree(doc, model, version)
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidArgument("'inputs' must be a non-empty list")
    inputs: list[InputTensor] = []
    offset = 0
    shared = False
    for index, raw in enumerate(raw_inputs):
        tensor, offset = _decode_input(raw, index, binary, offset)
        shared = shared or type(tensor) is shm.SharedInput
        inputs.append(tensor)
    if offset != len(binary):
        raise InvalidArgument(
            f"binary data holds {len(binary)} bytes but the inputs' binary_data_size add up to {offset}"
        )
    outputs = _decode_outputs(doc.get("outputs"))
    if outputs and not shared:
        shared = any(shm.REGION in o.parameters for o in outputs if o.parameters)
    return InferRequest(
        model=model,
        version=version,
        id=request_id,
        inputs=inputs,
        outputs=outputs,
        parameters=_parameters(doc.get("parameters"), "the request"),
        protocol=protocol,
        routing_key=routingkey.current.get(),
        shared_memory=shared,
    )


def _agree(doc: dict[str, Any], model: str, version: str | None) -> None:
    """A body's ``model_name``/``model_version`` must name what the URL names (an empty
    or null version names none)."""
    named = doc.get("model_name")
    if named is not None and named != model:
        raise InvalidArgument(
            f"the body's model_name {clip(repr(named))} does not match the URL's model '{model}'"
        )
    given = doc.get("model_version") or None
    if given is not None and given != version:
        where = f"version '{version}'" if version else "no version"
        raise InvalidArgument(
            f"the body's model_version {clip(repr(given))} does not match the URL's {where}"
        )


def _decode_input(raw: Any, index: int, binary: memoryview, offset: int) -> tuple[WireTensor, int]:
    """The input's header, checked; its elements are decoded once the core compared the
    header with the model's declaration."""
    item = _object(raw, f"inputs[{index}]", INPUT_FIELDS)
    name = _name(item.get("name"), f"inputs[{index}]")
    datatype = check_datatype(name, item.get("datatype"))
    shape = check_shape(name, item.get("shape"))
    parameters = _parameters(item.get("parameters"), f"input '{clip(name)}'")
    if shm.REGION in parameters:
        if "data" in item:
            raise InvalidArgument(
                f"input '{clip(name)}': give either 'data' or a shared memory region, not both"
            )
        return shm.shared_input(name, datatype, shape, parameters), offset
    size = parameters.get("binary_data_size")
    if size is not None:
        if "data" in item:
            raise InvalidArgument(
                f"input '{clip(name)}': give either 'data' or binary_data_size, not both"
            )
        if type(size) is not int or size < 0:
            raise InvalidArgument(
                f"input '{clip(name)}': binary_data_size must be a non-negative integer"
            )
        if offset + size > len(binary):
            raise InvalidArgument(
                f"input '{clip(name)}': binary_data_size {size} runs past the {len(binary)} bytes of "
                "binary data"
            )
        tensor = binary_tensor(name, datatype, shape, binary[offset : offset + size])
    elif "data" not in item:
        raise InvalidArgument(f"input '{clip(name)}' has no 'data' and no binary_data_size")
    else:
        tensor = json_tensor(name, datatype, shape, item["data"])
    return tensor, offset + (size or 0)


def _decode_outputs(raw: Any) -> list[RequestedOutput] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise InvalidArgument("'outputs' must be a list")
    outputs = []
    seen = set()
    for index, entry in enumerate(raw):
        item = _object(entry, f"outputs[{index}]", OUTPUT_FIELDS)
        name = _name(item.get("name"), f"outputs[{index}]")
        if name in seen:
            raise InvalidArgument(f"output '{clip(name)}' is requested more than once")
        seen.add(name)
        outputs.append(
            RequestedOutput(name, _parameters(item.get("parameters"), f"output '{clip(name)}'"))
        )
    return outputs


def encode_response(response: InferResponse, binary_default: bool) -> tuple[bytes, int | None]:
    """The body, and the JSON header's length when binary tensors follow it."""
    doc, blobs = response_document(response, binary_default)
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def response_document(
    response: InferResponse, binary_default: bool
) -> tuple[dict[str, Any], list[bytes]]:
    """The JSON response (numpy values left for orjson) and the binary tensors it announces."""
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for tensor in response.outputs:
        params = response.output_parameters.get(tensor.name, {})
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": tensor.shape,
        }
        if shm.REGION in params:  # written to its region (core/serving/shm.py)
            entry["parameters"] = tensor.parameters
        elif params.get("binary_data", binary_default):
            blob = to_binary(tensor.datatype, tensor.data)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = to_json_data(tensor.name, tensor.datatype, tensor.data)
        outputs.append(entry)
    doc: dict[str, Any] = {
        "model_name": response.model,
        "model_version": response.version,
        "outputs": outputs,
    }
    if response.id is not None:
        doc["id"] = response.id
    if response.parameters:
        doc["parameters"] = response.parameters
    return doc, blobs
