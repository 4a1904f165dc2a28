"""The gRPC edge's one registration step: every method of every service, one wrapper.

:meth:`Edge.add` serves each method of a service descriptor from the servicer's method of
the same name, through one wrapper per response shape. A call passes, in order:

1. **parse** -- the server hands the wrapper the request's bytes and the wrapper parses
   them (grpc's own parsing would end a malformed message UNKNOWN with the parser's
   exception class as its message): a malformed unary request ends the call
   INVALID_ARGUMENT naming the expected message type; in a request stream the message
   that does not parse arrives as :class:`Malformed`, in its place, for the stream's
   method to answer in its turn. A unary request is parsed after admission, or before it
   when rate limits are per model (admission needs the model it names).
2. **admit** -- the request id (``x-request-id`` metadata, or a new one) is set and sent
   back as initial metadata, the caller's key (``authorization: Bearer <key>`` or
   ``x-api-key``) and address are read, and the gateway admits the method's operation
   (:data:`inferd.gateway.operations.GRPC_METHODS`). A refusal ends the call with its
   status (UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED with ``retry-after``)
   before the method runs.
3. **call** -- the servicer's method, with the parsed message (or stream of them).
4. **translate errors** -- an exception ends the call with its status through
   :func:`inferd.grpc.errors.abort` (the one table and renderer; anything not an
   ``InferdError`` is INTERNAL and logged).
5. **log** -- the access log line, naming the model and version of the call's one
   request (a call that streams its requests may name a different model in each, and
   names none).
"""

from __future__ import annotations

import dataclasses
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final, TypeAlias

import grpc
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from inferd.errors import InferdError, InvalidArgument
from inferd.gateway import caller, requestid, routingkey, streams
from inferd.gateway.accesslog import AccessLog, Entry, Off
from inferd.gateway.admission import Gateway, bearer
from inferd.gateway.operations import Operation, grpc_operation
from inferd.gateway.streams import StreamPolicy
from inferd.grpc.errors import GRPC_STATUS, abort

#: The context of every call: requests arrive as bytes (parsed here), answers are messages.
#: (Quoted: grpc's classes are generic in its stubs only.)
Context: TypeAlias = "grpc.aio.ServicerContext[bytes, Message]"
Handler: TypeAlias = "grpc.RpcMethodHandler[bytes, Message]"


@dataclasses.dataclass(frozen=True, slots=True)
class Malformed:
    """Stands in a request stream for a message that did not parse, so that the stream's
    method answers it in its turn (an error answer, or the end of the stream)."""

    message: str


#: A request stream as a method receives it.
Requests: TypeAlias = AsyncIterator[Message | Malformed]
#: What a servicer's method is called with: a unary request's message, or the request stream.
Argument: TypeAlias = Message | Requests
#: A servicer's method. The descriptor ties its request type to the method (a method of
#: ``ModelInfer`` is only ever called with a ``ModelInferRequest``), which a callable's
#: type cannot say of a method looked up by name.
Answer: TypeAlias = Callable[..., Awaitable[Message]]
Stream: TypeAlias = Callable[..., AsyncIterator[Message]]

#: The fields of a request message that name the model and its version, first match wins:
#: ``ModelInferRequest``, the repository's requests and the simple ``PredictRequest``; the
#: other V2 model requests.
MODEL_FIELDS: Final = (("model_name", "model_version"), ("name", "version"))


def model_of(request: Message) -> tuple[str | None, str | None]:
    """The model and version a request message names (None for what it leaves empty)."""
    for model_field, version_field in MODEL_FIELDS:
        model = getattr(request, model_field, None)
        if isinstance(model, str):
            version = getattr(request, version_field, None)
            return model or None, version if isinstance(version, str) and version else None
    return None, None


def client_host(peer: str) -> str | None:
    """The address of a peer string such as ``ipv4:127.0.0.1:5000`` or ``ipv6:[::1]:5000``."""
    kind, _, address = urllib.parse.unquote(peer).partition(":")
    if kind not in ("ipv4", "ipv6"):
        return None
    return address.rpartition(":")[0].strip("[]") or None


@dataclasses.dataclass(frozen=True, slots=True)
class _Method:
    """What the wrapper needs of one method, resolved at registration."""

    path: str  # /package.Service/Method
    operation: Operation
    request_class: type[Message]
    #: Whether the request is parsed before admission (a unary request, per-model limits).
    parse_first: bool

    def parse(self, raw: bytes) -> Message | Malformed:
        try:
            return self.request_class.FromString(raw)
        except Exception:  # any failure to parse the client's bytes is the client's mistake
            return Malformed(
                f"malformed request: not a valid {self.request_class.DESCRIPTOR.full_name} message"
            )

    async def parse_all(self, raws: AsyncIterator[bytes]) -> Requests:
        async for raw in raws:
            yield self.parse(raw)


@dataclasses.dataclass(slots=True)
class _Call:
    request_id: str
    started: float
    principal: str | None = None
    #: The request, when admission parsed it first.
    parsed: Message | Malformed | None = None
    model: str | None = None
    version: str | None = None
    failure: BaseException | None = None


class Edge:
    """Registers services on a ``grpc.aio`` server, every call through :meth:`_answer` or
    :meth:`_stream` (parse, admit, call, translate errors, log)."""

    def __init__(
        self, gateway: Gateway, log: AccessLog, routing_key: str = "x-routing-key"
    ) -> None:
        self._gateway = gateway
        self._log = log
        #: Off: no line is built at all.
        self._logging = not isinstance(log, Off)
        self._routing_key = routing_key.lower()

    def add(self, server: grpc.aio.Server, service: ServiceDescriptor, servicer: object) -> None:
        """Serve every method of ``service`` from the servicer's method of the same name."""
        handlers = {method.name: self._handler(method, servicer) for method in service.methods}
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service.full_name, handlers),)
        )
        server.add_registered_method_handlers(service.full_name, handlers)

    def _handler(self, method: MethodDescriptor, servicer: object) -> Handler:
        """The handler of one method: its request and response shapes pick the wrapper."""
        path = f"/{method.containing_service.full_name}/{method.name}"
        target = _Method(
            path,
            grpc_operation(path),
            GetMessageClass(method.input_type),
            self._gateway.limits_per_model and not method.client_streaming,
        )
        serialize = GetMessageClass(method.output_type).SerializeToString
        behaviour = getattr(servicer, method.name)
        factory = _FACTORIES[(method.client_streaming, method.server_streaming)]
        wrap = self._stream if method.server_streaming else self._answer
        handler: Handler = factory(wrap(target, behaviour), response_serializer=serialize)
        return handler

    def _answer(
        self, method: _Method, behaviour: Answer
    ) -> Callable[[bytes | AsyncIterator[bytes], Context], Awaitable[Message]]:
        async def answer(request: bytes | AsyncIterator[bytes], context: Context) -> Message:
            call = await self._admit(method, context, request, streamed=False)
            try:
                return await behaviour(self._argument(method, call, request), context)
            except Exception as exc:
                call.failure = exc
                if not isinstance(exc, grpc.aio.AbortError):
                    await abort(context, exc)
                raise
            except BaseException as exc:
                call.failure = exc
                raise
            finally:
                self._write_log(method, call, context)

        return answer

    def _stream(
        self, method: _Method, behaviour: Stream
    ) -> Callable[[bytes | AsyncIterator[bytes], Context], AsyncIterator[Message]]:
        async def stream(
            request: bytes | AsyncIterator[bytes], context: Context
        ) -> AsyncIterator[Message]:
            call = await self._admit(method, context, request, streamed=True)
            try:
                async for response in behaviour(self._argument(method, call, request), context):
                    yield response
            except Exception as exc:
                call.failure = exc
                if not isinstance(exc, grpc.aio.AbortError):
                    await abort(context, exc)
                raise
            except BaseException as exc:
                call.failure = exc
                raise
            finally:
                self._write_log(method, call, context)

        return stream

    @staticmethod
    def _argument(method: _Method, call: _Call, request: bytes | AsyncIterator[bytes]) -> Argument:
        """The method's argument: the unary request's message (parsed now unless admission
        parsed it; a malformed one is refused), or the stream of requests, parsed as read."""
        if not isinstance(request, bytes):
            return method.parse_all(request)
        parsed = call.parsed if call.parsed is not None else method.parse(request)
        if isinstance(parsed, Malformed):
            raise InvalidArgument(parsed.message)
        call.model, call.version = model_of(parsed)
        return parsed

    async def _admit(
        self,
        method: _Method,
        context: Context,
        request: bytes | AsyncIterator[bytes],
        streamed: bool,
    ) -> _Call:
        """Set the request id and routing key, answer the id, admit the call (on the model
        its request names, parsed first, when rate limits are per model), or end it with the
        refusal's status. The id is answered as initial metadata on a call that streams its
        answers (its client may need it before the end), else as trailing metadata, which
        travels with the answer: initial metadata of its own would cost the call one more
        operation (and write) before its answer."""
        key = given_id = routing = None
        forwarded: list[str] = []
        for name, value in context.invocation_metadata() or ():
            if not isinstance(value, str):
                continue
            if name == "authorization":
                key = bearer(value) or key
            elif name == "x-api-key":
                key = key or value.strip() or None
            elif name == "x-request-id":
                given_id = value
            elif name == self._routing_key:
                routing = value
            elif name == "x-forwarded-for":
                forwarded.append(value)
        call = _Call(requestid.accept(given_id), time.perf_counter())
        requestid.current.set(call.request_id)
        if streamed:
            await context.send_initial_metadata((("x-request-id", call.request_id),))
        else:
            context.set_trailing_metadata((("x-request-id", call.request_id),))
        principal = self._gateway.principal(
            key, client_host(context.peer()), ",".join(forwarded) if forwarded else None
        )
        call.principal = principal.name
        caller.current.set((principal.name, principal.address))
        routingkey.current.set(routingkey.choose(routing, principal.name))
        model = None
        if method.parse_first and isinstance(request, bytes):
            call.parsed = method.parse(request)
            if isinstance(call.parsed, Message):
                model = model_of(call.parsed)[0]
        try:
            await self._gateway.admit(principal, method.operation, model)
        except InferdError as exc:
            call.failure = exc
            self._write_log(method, call, context)
            await abort(context, exc)
        if not isinstance(request, bytes):  # a stream of requests: each message counts too
            streams.current.set(StreamPolicy(self._gateway, principal))
        return call

    def _write_log(self, method: _Method, call: _Call, context: Context) -> None:
        if not self._logging:
            return
        code: grpc.StatusCode | None = context.code()
        if code is None:
            code = grpc.StatusCode.UNKNOWN if call.failure is not None else grpc.StatusCode.OK
        if isinstance(call.failure, InferdError):
            code = GRPC_STATUS[call.failure.code]
        name = code.name if isinstance(code, grpc.StatusCode) else str(code)
        self._log.write(
            Entry(
                "GRPC",
                method.path,
                name,
                (time.perf_counter() - call.started) * 1000,
                call.request_id,
                call.model,
                call.version,
                call.principal,
            )
        )


#: (request streams, response streams) -> grpc's handler for that shape of method.
_FACTORIES: Final[dict[tuple[bool, bool], Callable[..., Handler]]] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}
