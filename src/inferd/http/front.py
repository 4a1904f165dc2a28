"""The one ASGI front: every HTTP request and WebSocket of the port passes through it.

Built in one place, outermost first::

    Front            the path matched once against the route table (http/routes.py): a
                     path not in it is answered 404 here; request id (X-Request-Id in,
                     on every answer out), access log line
      middleware     from settings (:func:`middleware`): CORS when server.cors_origins
        admission    the caller's key -> Principal; gateway.admitted(principal, operation, model)
          dispatch   the route's fast handler (http/raw.py), else the FastAPI router

The fast routes are behind the same middleware and admission as every other route.
Refusals are rendered by the one error function (http/errors.py); a refused WebSocket
handshake gets the same JSON answer (or, where the server cannot send one, close 1008).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inferd.core.service import InferenceService
from inferd.errors import InferdError, NotFound, PermissionDenied, clip
from inferd.gateway import requestid, routingkey
from inferd.gateway.accesslog import AccessLog, Entry, access_log
from inferd.gateway.admission import Gateway, Principal, bearer
from inferd.gateway.operations import Operation
from inferd.http import direct, raw
from inferd.http.errors import error_parts, send_json
from inferd.http.jsonwork import JsonParser
from inferd.http.routes import Match, RouteTable
from inferd.settings import ServerSettings

REQUEST_ID: Final = b"x-request-id"
#: Where the front leaves what it learned of a request for the layers inside it.
SCOPE_KEY: Final = "inferd.request"
CROSS_ORIGIN_ADMIN: Final = (
    "cross-origin requests to the control API are refused (Origin is not in server.cors_origins)"
)


@dataclasses.dataclass(slots=True)
class RequestInfo:
    request_id: str
    #: The path's route (None: no such path, refused with 404).
    match: Match | None
    model: str | None
    version: str | None
    principal: Principal
    origin: str | None
    host: str | None
    status: int | str = 0
    #: The routing key header's value, else the caller's key name.
    routing_key: str | None = None
    #: ``time.monotonic()`` when the front first ran the request.
    arrived: float = 0.0


def middleware(settings: ServerSettings, routing_header: str) -> list[Middleware]:
    """The middleware every route runs under, outermost first, from the settings
    (``routing_header``: the routing key's header, which browsers may send)."""
    stack: list[Middleware] = []
    if settings.cors_origins:
        stack.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=[
                    "authorization",
                    "x-api-key",
                    "content-type",
                    "x-request-id",
                    "inference-header-content-length",
                    "inference-timeout-ms",
                    routing_header.lower(),
                ],
                expose_headers=[
                    "x-request-id",
                    "retry-after",
                    "inference-header-content-length",
                    "x-model-version",
                ],
            )
        )
    return stack


class Front:
    """The ASGI application a server runs: ``app`` is the FastAPI application inside."""

    def __init__(
        self,
        app: Any,
        service: InferenceService,
        gateway: Gateway,
        routes: RouteTable,
        json: JsonParser,
        settings: ServerSettings,
    ) -> None:
        self.app = app
        self.state = app.state
        self._service = service
        self._gateway = gateway
        self._routes = routes
        self._json = json
        self._log: AccessLog = access_log(settings.access_log)
        #: Off: no line is built at all (the entry, its timing).
        self._logging = settings.access_log != "off"
        self._origins = frozenset(settings.cors_origins)
        self._routing_header = service.settings.routing.key_header.lower().encode()
        inner: ASGIApp = self._admit
        stack = middleware(settings, service.settings.routing.key_header)
        #: No middleware: fast requests may be answered from the connection (http/direct.py).
        self._bare = not stack
        #: Direct requests read whose answer has not started yet (http/direct.py counts
        #: them in): one that finds no other is alone (inferd.core.serving.batcher).
        self.arriving = 0
        #: Answers finished in a loop turn, written together (http/direct.py).
        self.outbox = direct.Outbox()
        for entry in reversed(stack):
            inner = entry.cls(inner, *entry.args, **entry.kwargs)
        self._stack = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)  # lifespan
            return
        info = self._read(scope, self._routes.match(scope["path"]))
        token = requestid.current.set(info.request_id)
        routing = routingkey.current.set(info.routing_key)
        scope[SCOPE_KEY] = info
        header = (REQUEST_ID, info.request_id.encode())
        info.arrived = started = time.monotonic()

        async def answer(message: Message) -> None:
            kind = message["type"]
            if kind in ("http.response.start", "websocket.http.response.start"):
                info.status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            elif kind == "websocket.accept":
                info.status = 101
                message["headers"] = [*message.get("headers", ()), header]
            elif kind == "websocket.close" and not info.status:
                info.status = 403
            await send(message)

        try:
            await self._stack(scope, receive, answer)
        finally:
            requestid.current.reset(token)
            routingkey.current.reset(routing)
            if self._logging:
                self._write_log(scope, kind, info, started)

    def _write_log(self, scope: Scope, kind: str, info: RequestInfo, started: float) -> None:
        self._log.write(
            Entry(
                scope["method"] if kind == "http" else "WS",
                scope["path"],
                info.status or 500,
                (time.monotonic() - started) * 1000,
                info.request_id,
                info.model,
                info.version,
                info.principal.name,
            )
        )

    def _read(self, scope: Scope, match: Match | None) -> RequestInfo:
        """One pass over the headers for what the front needs (``match``: the path's)."""
        key = given_id = origin = host = forwarded = routing = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                key = bearer(value.decode("latin-1")) or key
            elif name == b"x-api-key":
                key = key or value.decode("latin-1").strip() or None
            elif name == REQUEST_ID:
                given_id = value.decode("latin-1")
            elif name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"host":
                host = value.decode("latin-1")
            elif name == self._routing_header:
                routing = value.decode("latin-1")
            elif name == b"x-forwarded-for":
                text = value.decode("latin-1")
                forwarded = text if forwarded is None else f"{forwarded},{text}"
        client = scope.get("client")
        principal = self._gateway.principal(key, client[0] if client else None, forwarded)
        return RequestInfo(
            requestid.accept(given_id),
            match,
            match.model if match is not None else None,
            match.version if match is not None else None,
            principal,
            origin,
            host,
            routing_key=routingkey.choose(routing, principal.name),
        )

    async def _admit(self, scope: Scope, receive: Receive, send: Send) -> None:
        info: RequestInfo = scope[SCOPE_KEY]
        match = info.match
        try:
            if match is None:
                raise NotFound(f"Not Found: no route {clip(scope['path'])} (the API: /docs)")
            waiting = self._admission(info, match, scope["type"])
            if waiting is not None:
                await waiting
        except InferdError as exc:
            await _refuse(exc, scope, send)
            return
        if scope["type"] == "http":
            handler = match.route.handler
            if handler is not None:
                await raw.serve(handler, self._call(info), self._service, scope, receive, send)
                return
        elif info.origin is not None and self._origins:
            send = _allow_origin(info.origin, send)
        await self.app(scope, receive, send)

    def _admission(self, info: RequestInfo, match: Match, kind: str) -> Awaitable[None] | None:
        """Raise unless the request is admitted; what to await first when the rate limit's
        counters are shared (else None: decided here, without a coroutine)."""
        if info.origin is not None:
            self._check_origin(match.route.operation, info.origin, info.host, kind)
        return self._gateway.admitted(info.principal, match.route.operation, info.model)

    def _call(self, info: RequestInfo) -> raw.Call:
        return raw.Call({}, info.model, info.version, b"", self._json, info.principal, info.arrived)

    # -- the direct path (http/direct.py) --------------------------------------------------

    def direct_match(self, path: str) -> Match | None:
        """``path``'s match when its requests may be answered from the connection, without
        an ASGI cycle: a fast inference route with one answer, and no middleware to run."""
        if not self._bare:
            return None
        match = self._routes.match(path)
        if match is None or not match.route.direct:
            return None
        return match

    async def direct_answer(self, scope: Scope, match: Match, body: bytes) -> raw.Answer:
        """What :meth:`__call__` answers a direct request (its whole body arrived): the
        same request id, routing key, admission, handler and access-log line. The request
        id is the answer's last header."""
        self.arriving -= 1
        alone = not self.arriving
        info = self._read(scope, match)
        token = requestid.current.set(info.request_id)
        routing = routingkey.current.set(info.routing_key)
        info.arrived = started = time.monotonic()
        try:
            try:
                waiting = self._admission(info, match, "http")
                if waiting is not None:
                    await waiting
            except InferdError as exc:
                answer = raw.error_answer(exc)
            else:
                handler = match.route.handler
                assert handler is not None  # a direct route has one
                call = self._call(info)
                call.alone = alone
                try:
                    raw.take_whole(call, scope, self._service, body)
                    answer = await handler(self._service, call)
                except Exception as exc:
                    answer = raw.error_answer(exc)
            info.status = answer.status
            answer.headers = [*answer.headers, (REQUEST_ID, info.request_id.encode())]
            return answer
        finally:
            requestid.current.reset(token)
            routingkey.current.reset(routing)
            if self._logging:
                self._write_log(scope, "http", info, started)

    def _check_origin(self, operation: Operation, origin: str, host: str | None, kind: str) -> None:
        """A browser's cross-origin request may not reach the control API (a simple
        ``text/plain`` POST needs no preflight), nor open a WebSocket from an origin that
        ``server.cors_origins`` (when set) does not list."""
        if origin in self._origins or "*" in self._origins:
            return
        same_origin = urlsplit(origin).netloc == host
        if operation is Operation.ADMIN and not same_origin:
            raise PermissionDenied(CROSS_ORIGIN_ADMIN)
        if kind == "websocket" and self._origins and not same_origin:
            raise PermissionDenied("WebSocket from an origin not in server.cors_origins")


def _allow_origin(origin: str, send: Send) -> Send:
    """Name the (allowed) origin on a WebSocket's handshake answer."""

    async def accept(message: Message) -> None:
        if message["type"] == "websocket.accept":
            headers: Sequence[tuple[bytes, bytes]] = message.get("headers", ())
            message["headers"] = [
                *headers,
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"vary", b"Origin"),
            ]
        await send(message)

    return accept


async def _refuse(exc: InferdError, scope: Scope, send: Send) -> None:
    if scope["type"] == "http":
        status, body, headers = error_parts(exc)
        await send_json(status, body, headers, send)
        return
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    status, body, headers = error_parts(exc)
    await send(
        {
            "type": "websocket.http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "websocket.http.response.body", "body": body})
