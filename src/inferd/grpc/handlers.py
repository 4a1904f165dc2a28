"""Registering a servicer so that its handlers parse their own requests.

grpc's generated ``add_*_to_server`` parses each request before the handler runs; a
message that does not parse then ends the call UNKNOWN with the parser's exception class
as its message. Registered from here, the server hands the handler the raw bytes and the
handler parses them: a malformed message ends the call INVALID_ARGUMENT, with a short
message that names the expected message type. In a request stream the message that
does not parse arrives as :class:`Malformed`, in its place.

A unary call's request may arrive parsed already: admission parses it first when rate
limits are per model (it needs the model). A call's one request, once parsed, leaves the
model and version it names in :data:`named` (read from :data:`MODEL_FIELDS`), for the
call's access log line; a call that streams its requests may name a different model in
each, and names none there.
"""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

Factory = Callable[[Any, Any, Callable[[Any], bytes]], grpc.RpcMethodHandler]


@dataclasses.dataclass(frozen=True, slots=True)
class Malformed:
    """Stands in a request stream for a message that did not parse, so that the stream's
    handler answers it in its turn (an error answer, or the end of the stream)."""

    message: str


#: The fields of a request message that name the model and its version, first match wins:
#: ``ModelInferRequest``, the repository's requests and the simple ``PredictRequest``; the
#: other V2 model requests.
MODEL_FIELDS: Final = (("model_name", "model_version"), ("name", "version"))

Named = tuple[str | None, str | None]
#: The model and version named by the request of the call running in this context.
named: Final[contextvars.ContextVar[Named]] = contextvars.ContextVar(
    "inferd_grpc_named", default=(None, None)
)


def model_of(request: Message) -> Named:
    """The model and version a request message names (None for what it leaves empty)."""
    for model_field, version_field in MODEL_FIELDS:
        model = getattr(request, model_field, None)
        if isinstance(model, str):
            version = getattr(request, version_field, None)
            return model or None, version if isinstance(version, str) and version else None
    return None, None


def _reason(message_class: Any) -> str:
    return f"malformed request: not a valid {message_class.DESCRIPTOR.full_name} message"


async def _parse(message_class: Any, raw: bytes | Message, context: Any) -> Any:
    if isinstance(raw, Message):  # parsed by admission already (see inferd.grpc.interceptor)
        named.set(model_of(raw))
        return raw
    try:
        request = message_class.FromString(raw)
    except Exception:  # any failure to parse the client's bytes is the client's mistake
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _reason(message_class))
    named.set(model_of(request))
    return request


async def _parse_all(message_class: Any, raws: AsyncIterator[bytes]) -> AsyncIterator[Any]:
    async for raw in raws:
        try:
            yield message_class.FromString(raw)
        except Exception:  # as in _parse
            yield Malformed(_reason(message_class))


def _unary_unary(method: Any, message_class: Any, serialize: Callable[[Any], bytes]) -> Any:
    async def handle(raw: bytes, context: Any) -> Any:
        return await method(await _parse(message_class, raw, context), context)

    return grpc.unary_unary_rpc_method_handler(handle, response_serializer=serialize)


def _stream_stream(method: Any, message_class: Any, serialize: Callable[[Any], bytes]) -> Any:
    async def handle(raws: AsyncIterator[bytes], context: Any) -> AsyncIterator[Any]:
        async for response in method(_parse_all(message_class, raws), context):
            yield response

    return grpc.stream_stream_rpc_method_handler(handle, response_serializer=serialize)


def _unary_stream(method: Any, message_class: Any, serialize: Callable[[Any], bytes]) -> Any:
    async def handle(raw: bytes, context: Any) -> AsyncIterator[Any]:
        async for response in method(await _parse(message_class, raw, context), context):
            yield response

    return grpc.unary_stream_rpc_method_handler(handle, response_serializer=serialize)


def _stream_unary(method: Any, message_class: Any, serialize: Callable[[Any], bytes]) -> Any:
    async def handle(raws: AsyncIterator[bytes], context: Any) -> Any:
        return await method(_parse_all(message_class, raws), context)

    return grpc.stream_unary_rpc_method_handler(handle, response_serializer=serialize)


#: (client streams, server streams) -> the handler for that kind of method.
HANDLERS: Final[dict[tuple[bool, bool], Factory]] = {
    (False, False): _unary_unary,
    (True, True): _stream_stream,
    (False, True): _unary_stream,
    (True, False): _stream_unary,
}


def add_servicer(server: Any, service: ServiceDescriptor, servicer: Any) -> None:
    """Serve every method of ``service`` from the servicer's method of the same name."""
    handlers = {}
    for method in service.methods:
        factory = HANDLERS[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = factory(
            getattr(servicer, method.name),
            GetMessageClass(method.input_type),
            GetMessageClass(method.output_type).SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    server.add_registered_method_handlers(service.full_name, handlers)
