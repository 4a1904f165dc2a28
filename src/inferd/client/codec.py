"""Tensors in and out of a client: numpy arrays to the V2 REST body and back, on the
server's own codecs (``inferd.tensors``, ``inferd.http.codec``), so client and server
cannot disagree on a byte.

By default inputs travel in the binary tensor extension and the outputs are asked for in
it too; ``binary=False`` writes and reads JSON ``data``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any, Final

import numpy as np
import orjson

from inferd.errors import InvalidArgument
from inferd.http.codec import HEADER_LENGTH, split_body
from inferd.tensors import check_datatype, from_binary, from_json, to_binary, to_json_data
from inferd.types import FLOAT_DATATYPES, datatype_of

Array = np.ndarray[Any, Any]
#: What a caller may give as inputs: name -> array (or anything ``np.asarray`` takes).
Inputs = Mapping[str, Any]

JSON_TYPE: Final = "application/json"
OCTET_STREAM: Final = "application/octet-stream"


@dataclasses.dataclass(frozen=True, slots=True)
class InferResult:
    """One answer: the outputs by name, and what the server said of it.

    ``version`` is the version that answered (after labels and traffic splits),
    ``cache`` is ``"hit"`` or ``"miss"`` for a model with the prediction cache on (else
    None), ``request_id`` the server's id of the request (its logs name it). A partial
    answer of a stream has ``final`` False. Binary outputs are read-only views of the
    answer's bytes (``np.array(result["y"])`` copies one).
    """

    model: str
    version: str
    outputs: dict[str, Array]
    id: str | None = None
    request_id: str | None = None
    cache: str | None = None
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    final: bool = True

    def __getitem__(self, name: str) -> Array:
        return self.outputs[name]


@dataclasses.dataclass(frozen=True, slots=True)
class Tensor:
    """An input ready to send: its V2 datatype and its array."""

    name: str
    datatype: str
    array: Array


def tensors(inputs: Inputs, datatypes: Mapping[str, str] | None = None) -> list[Tensor]:
    """``inputs`` as tensors. The datatype is the one ``datatypes`` names (BF16 can only
    be asked for so: numpy has no bfloat16), else the array's; strings are BYTES (UTF-8)."""
    if not inputs:
        raise InvalidArgument("a request needs at least one input")
    datatypes = datatypes or {}
    unknown = datatypes.keys() - inputs.keys()
    if unknown:
        raise InvalidArgument(f"datatypes names inputs that are not given: {sorted(unknown)}")
    out = []
    for name, value in inputs.items():
        array = np.asarray(value)
        if array.dtype.kind in ("U", "S"):
            array = _as_bytes(array)
        datatype = datatypes.get(name)
        if datatype is None:
            try:
                datatype = datatype_of(array)
            except KeyError:
                raise InvalidArgument(
                    f"input '{name}': numpy dtype {array.dtype} has no V2 datatype"
                ) from None
        out.append(Tensor(name, check_datatype(name, datatype), array))
    return out


def _as_bytes(array: Array) -> Array:
    encoded = np.empty(array.shape, dtype=object)
    flat = encoded.reshape(-1)
    for i, item in enumerate(array.reshape(-1)):
        flat[i] = item.encode() if isinstance(item, str) else bytes(item)
    return encoded


def encode_request(
    inputs: Iterable[Tensor],
    outputs: Iterable[str] | None,
    binary: bool,
    parameters: Mapping[str, Any] | None = None,
    request_id: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The V2 infer body and its content headers."""
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for tensor in inputs:
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.array.shape),
        }
        if binary:
            blob = to_binary(tensor.datatype, tensor.array)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = to_json_data(tensor.name, tensor.datatype, tensor.array)
        entries.append(entry)
    doc: dict[str, Any] = {"inputs": entries}
    if request_id is not None:
        doc["id"] = request_id
    params = dict(parameters or {})
    if outputs is not None:
        doc["outputs"] = [{"name": n, "parameters": {"binary_data": binary}} for n in outputs]
    elif binary:
        params["binary_data_output"] = True
    if params:
        doc["parameters"] = params
    header = orjson.dumps(doc)
    if not blobs:
        return header, {"content-type": JSON_TYPE}
    return b"".join([header, *blobs]), {
        "content-type": OCTET_STREAM,
        HEADER_LENGTH: str(len(header)),
    }


def decode_response(
    body: bytes, header_length: str | None, request_id: str | None, cache: str | None
) -> InferResult:
    """A V2 infer answer (JSON, or JSON header and binary outputs)."""
    header, binary = split_body(body, header_length)
    return decode_document(orjson.loads(header), binary, request_id, cache)


#: How the server writes the float values JSON has no number for (``tensors.NONFINITE_JSON``).
NONFINITE: Final[dict[str, float]] = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _from_json(name: str, datatype: str, shape: tuple[int, ...], data: Any) -> Array:
    """An output's JSON ``data``; a float output may hold NaN and infinities as strings."""
    if datatype in FLOAT_DATATYPES and _has_text(data):
        data = (
            np.vectorize(lambda v: NONFINITE.get(v, v), otypes=[object])(
                np.asarray(data, dtype=object)
            )
            .astype(np.float64)
            .tolist()
        )
    return from_json(name, datatype, shape, data)


def _has_text(data: Any) -> bool:
    return any(isinstance(v, str) for v in np.asarray(data, dtype=object).reshape(-1))


def decode_document(
    doc: dict[str, Any], binary: memoryview, request_id: str | None, cache: str | None
) -> InferResult:
    outputs: dict[str, Array] = {}
    offset = 0
    for item in doc.get("outputs", ()):
        name, datatype, shape = item["name"], item["datatype"], tuple(item["shape"])
        size = (item.get("parameters") or {}).get("binary_data_size")
        if size is None:
            outputs[name] = _from_json(name, datatype, shape, item["data"])
        else:
            outputs[name] = from_binary(name, datatype, shape, binary[offset : offset + size])
            offset += size
    parameters = dict(doc.get("parameters") or {})
    final = doc.get("final", True) is not False
    return InferResult(
        doc.get("model_name", ""),
        doc.get("model_version", ""),
        outputs,
        doc.get("id"),
        request_id,
        cache,
        parameters,
        final,
    )
