"""gRPC admission: one server interceptor in front of every method of every service.

For each call it takes the request id (``x-request-id`` metadata, or a new one) and
sends it back as initial metadata, reads the caller's key (``authorization: Bearer <key>``
or ``x-api-key`` metadata), asks the gateway to admit the method's operation
(:data:`inferd.gateway.operations.GRPC_METHODS`), on the model a unary call's request
names when rate limits are per model, and writes the access log line (with the model and
version of the call's request: :data:`inferd.grpc.handlers.named`). A refusal ends the
call with the status of the core error (UNAUTHENTICATED, PERMISSION_DENIED,
RESOURCE_EXHAUSTED with ``retry-after``) before the method runs.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message_factory import GetMessageClass

from inferd.errors import InferdError
from inferd.gateway import caller, requestid, routingkey
from inferd.gateway.accesslog import AccessLog, Entry, Off
from inferd.gateway.admission import Gateway, bearer
from inferd.gateway.operations import grpc_operation
from inferd.grpc.errors import GRPC_STATUS, abort
from inferd.grpc.handlers import model_of, named
from inferd.grpc.protos import POOL


def client_host(peer: str) -> str | None:
    """The address of a peer string such as ``ipv4:127.0.0.1:5000`` or ``ipv6:[::1]:5000``."""
    kind, _, address = urllib.parse.unquote(peer).partition(":")
    if kind not in ("ipv4", "ipv6"):
        return None
    return address.rpartition(":")[0].strip("[]") or None


@dataclasses.dataclass(slots=True)
class _Call:
    method: str
    key: str | None
    request_id: str
    started: float
    principal: str | None = None


class Admission(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(
        self, gateway: Gateway, log: AccessLog, routing_key: str = "x-routing-key"
    ) -> None:
        self._gateway = gateway
        self._log = log
        #: Off: no line is built at all.
        self._logging = not isinstance(log, Off)
        self._routing_key = routing_key.lower()
        # With per-model rate limits a unary call's request is parsed before admission,
        # which needs its model; otherwise the method's handler parses it (and nothing here
        # looks at it).
        self._wrappers = _PER_MODEL_WRAPPERS if gateway.limits_per_model else _WRAPPERS
        self._request_classes: dict[str, Any] = {}

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        details: Any,
    ) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        key = given_id = routing = None
        for name, value in details.invocation_metadata or ():
            if name == "authorization" and isinstance(value, str):
                key = bearer(value) or key
            elif name == "x-api-key" and isinstance(value, str):
                key = key or value.strip() or None
            elif name == "x-request-id" and isinstance(value, str):
                given_id = value
            elif name == self._routing_key and isinstance(value, str):
                routing = value
        method: str = details.method
        wrap = self._wrappers[(handler.request_streaming, handler.response_streaming)]
        make = _FACTORIES[(handler.request_streaming, handler.response_streaming)]
        behaviour = (
            handler.unary_unary
            or handler.unary_stream
            or handler.stream_unary
            or handler.stream_stream
        )
        call = (method, key, given_id, routing)
        return make(
            wrap(self, behaviour, call),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def parsed(self, method: str, raw: bytes) -> tuple[Any, str | None]:
        """A unary call's request message and the model it names; the raw bytes and None
        when they do not parse (the method's handler refuses them)."""
        if method not in self._request_classes:
            self._request_classes[method] = _request_class(method)
        message_class = self._request_classes[method]
        if message_class is None:
            return raw, None
        try:
            request = message_class.FromString(raw)
        except Exception:  # the handler answers INVALID_ARGUMENT with its message
            return raw, None
        return request, model_of(request)[0]

    async def enter(self, call: Call, context: Any, model: str | None = None) -> _Call:
        """Set the request id and routing key, answer the id, admit the call on ``model``
        (or abort it)."""
        method, key, given_id, routing = call
        state = _Call(method, key, requestid.accept(given_id), time.perf_counter())
        requestid.current.set(state.request_id)
        await context.send_initial_metadata((("x-request-id", state.request_id),))
        principal = self._gateway.principal(
            key, client_host(context.peer()), forwarded_for(context)
        )
        state.principal = principal.name
        caller.current.set((principal.name, principal.address))
        routingkey.current.set(routingkey.choose(routing, principal.name))
        try:
            await self._gateway.admit(principal, grpc_operation(method), model)
        except InferdError as exc:
            self.leave(state, context, exc)
            await abort(context, exc)
        return state

    def leave(self, state: _Call, context: Any, failure: BaseException | None) -> None:
        if not self._logging:
            return
        code = context.code()
        if code is None:
            code = grpc.StatusCode.UNKNOWN if failure is not None else grpc.StatusCode.OK
        if isinstance(failure, InferdError):
            code = GRPC_STATUS[failure.code]
        name = code.name if isinstance(code, grpc.StatusCode) else str(code)
        model, version = named.get()
        self._log.write(
            Entry(
                "GRPC",
                state.method,
                name,
                (time.perf_counter() - state.started) * 1000,
                state.request_id,
                model,
                version,
                state.principal,
            )
        )


#: A call's method, API key, request id and routing key, as its metadata gave them.
Call = tuple[str, str | None, str | None, str | None]


def _unary(admission: Admission, behaviour: Any, call: Call, per_model: bool = False) -> Any:
    """``per_model``: the request arrives unparsed and is parsed here, once, so that
    admission knows the model it names (per-model rate limits)."""

    async def run(request: Any, context: Any) -> Any:
        model = None
        if per_model:
            request, model = admission.parsed(call[0], request)
        state = await admission.enter(call, context, model)
        failure: BaseException | None = None
        try:
            return await behaviour(request, context)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            admission.leave(state, context, failure)

    return run


def _streaming(admission: Admission, behaviour: Any, call: Call, per_model: bool = False) -> Any:
    """``per_model``: as for :func:`_unary` (a unary request, streamed answers)."""

    async def run(request: Any, context: Any) -> AsyncIterator[Any]:
        model = None
        if per_model:
            request, model = admission.parsed(call[0], request)
        state = await admission.enter(call, context, model)
        failure: BaseException | None = None
        try:
            async for response in behaviour(request, context):
                yield response
        except BaseException as exc:
            failure = exc
            raise
        finally:
            admission.leave(state, context, failure)

    return run


def _request_class(method: str) -> Any:
    """The request message class of a method path (``/package.Service/Method``); None for
    a method whose service is not among inferd's protos (:data:`inferd.grpc.protos.POOL`)."""
    service, _, name = method.strip("/").partition("/")
    try:
        found = POOL.FindServiceByName(service).FindMethodByName(name)
    except KeyError:
        return None
    return GetMessageClass(found.input_type)


#: (request streams, response streams) -> how the method's behaviour is wrapped.
_WRAPPERS: dict[tuple[bool, bool], Callable[[Admission, Any, Call], Any]] = {
    (False, False): _unary,
    (True, False): _unary,
    (False, True): _streaming,
    (True, True): _streaming,
}
#: The same, when admission needs the model a unary call's request names: a stream of
#: requests may name a different model in each, and is admitted on none.
_PER_MODEL_WRAPPERS: dict[tuple[bool, bool], Callable[[Admission, Any, Call], Any]] = {
    **_WRAPPERS,
    (False, False): functools.partial(_unary, per_model=True),
    (False, True): functools.partial(_streaming, per_model=True),
}
_FACTORIES: dict[tuple[bool, bool], Callable[..., Any]] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def forwarded_for(context: Any) -> str | None:
    """Every ``x-forwarded-for`` metadata value of a call, joined (None when absent)."""
    values = [v for k, v in context.invocation_metadata() or () if k == "x-forwarded-for"]
    return ",".join(values) if values else None
