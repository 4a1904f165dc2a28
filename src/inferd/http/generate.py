"""Triton's generate extension: ``POST /v2/models/{m}[/versions/{v}]/generate`` and
``.../generate_stream`` (raw routes, see http/raw.py).

The request is a JSON object whose keys are the model's input names, each with a value
(a string or number, or nested lists of them; axes of size 1 are added in front up to the
input's declared rank), plus optional ``parameters``. The response holds ``model_name``,
``model_version`` and each output by name: its one element, or nested lists.

``generate`` answers once (a model that streams is refused with 400); ``generate_stream``
serves a streaming model as Server-Sent Events, one ``data:`` event per partial response,
sent as the model yields it (a model that answers once is refused with 400). A request the
server cannot serve is refused before the stream starts, with a JSON error and its status;
an error once events have been sent arrives as a last event ``{"error": ...}``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, Final

import orjson

from inferd.core.messages import InferRequest, InferResponse, InputTensor
from inferd.core.service import InferenceService
from inferd.errors import InvalidArgument
from inferd.gateway import requestid, routingkey
from inferd.http.errors import status_of
from inferd.http.headers import deadline_from
from inferd.http.raw import Answer, Call, answer_headers
from inferd.tensors import from_json, to_json_data
from inferd.types import Tensor

log = logging.getLogger("inferd.http")

EVENT_STREAM: Final = b"text/event-stream; charset=utf-8"
#: Proxies must pass events on as they come, not buffer the body.
STREAM_HEADERS: Final = ((b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no"))
PARAMETERS: Final = "parameters"


async def generate(service: InferenceService, call: Call) -> Answer:
    response = await service.infer(await decode(service, call))
    return Answer(
        orjson.dumps(encode(response), option=orjson.OPT_SERIALIZE_NUMPY),
        headers=answer_headers(response.version, response.cache),
    )


async def generate_stream(service: InferenceService, call: Call) -> Answer:
    # An SSE stream ends with the connection: no empty final event.
    responses = service.stream(await decode(service, call), empty_final=False)
    return Answer(b"", EVENT_STREAM, STREAM_HEADERS, stream=_events(responses))


async def _events(responses: AsyncIterator[InferResponse]) -> AsyncIterator[bytes]:
    try:
        async for response in responses:
            yield _event(encode(response))
    except Exception as exc:
        # The transport's one table and renderer (http/errors.py), with the request id.
        _, message = status_of(exc)
        yield _event({"error": message, "request_id": requestid.current.get()})


def _event(doc: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n\n"


async def decode(service: InferenceService, call: Call) -> InferRequest:
    """A generate request: input names as keys, plus ``parameters``."""
    assert call.model is not None  # the route's pattern captures it
    doc = await call.json.parse(call.body)
    if not isinstance(doc, dict):
        raise InvalidArgument(
            'a generate request is a JSON object: {"<input name>": value, ..., "parameters": {...}}'
        )
    declared = service.router.named(call.model, call.version).inputs
    specs = {spec.name: spec.as_metadata() for spec in declared}
    unknown = sorted(doc.keys() - specs.keys() - {PARAMETERS})
    if unknown:
        raise InvalidArgument(
            f"unknown field(s) {unknown} for model '{call.model}'; expected its inputs "
            f"{sorted(specs)} and '{PARAMETERS}'"
        )
    parameters = doc.get(PARAMETERS, {})
    if not isinstance(parameters, dict) or not all(
        isinstance(v, bool | int | float | str) for v in parameters.values()
    ):
        raise InvalidArgument(f"'{PARAMETERS}' must be an object of strings, numbers or booleans")
    inputs: list[InputTensor] = [
        Tensor(name, specs[name]["datatype"], _array(name, specs[name], value))
        for name, value in doc.items()
        if name != PARAMETERS
    ]
    return InferRequest(
        model=call.model,
        version=call.version,
        inputs=inputs,
        parameters=parameters,
        deadline=deadline_from(call.headers),
        request_id=requestid.current.get(),
        routing_key=routingkey.current.get(),
    )


def _array(name: str, spec: dict[str, Any], value: Any) -> Any:
    data = value if isinstance(value, list) else [value]
    shape: list[int] = []
    level: Any = data
    while isinstance(level, list):
        shape.append(len(level))
        if not level:
            break
        level = level[0]
    array = from_json(name, spec["datatype"], tuple(shape), data)
    while array.ndim < len(spec["shape"]):
        array = array[None, ...]
    return array


def encode(response: InferResponse) -> dict[str, Any]:
    """``model_name``, ``model_version`` and every output by name."""
    doc: dict[str, Any] = {"model_name": response.model, "model_version": response.version}
    for tensor in response.outputs:
        flat = to_json_data(tensor.name, tensor.datatype, tensor.data)
        doc[tensor.name] = flat[0] if len(flat) == 1 else _nest(flat, tensor.shape)
    return doc


def _nest(flat: list[Any], shape: list[int]) -> list[Any]:
    if len(shape) <= 1:
        return flat
    step = len(flat) // shape[0] if shape[0] else 0
    return [_nest(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]
