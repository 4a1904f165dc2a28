"""The ASGI application: routes, middleware and error handling assembled in one place."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, Final

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import WebSocketRoute
from starlette.types import Receive, Scope, Send

from inferd import __version__
from inferd.core.service import InferenceService
from inferd.core.streams import StreamRegistry
from inferd.errors import InferdError, ResourceExhausted
from inferd.gateway.ratelimit import RateLimiter, rate_limiter
from inferd.http import generate, simple, v2, websocket
from inferd.http.docs import add_docs
from inferd.http.errors import error_response, internal_error_response
from inferd.http.jsonwork import JsonParser
from inferd.http.openapi import document_raw_routes
from inferd.http.raw import Handler, RawRoutes

#: The inference routes, served as raw ASGI ahead of FastAPI (see http/raw.py).
RAW_ROUTES: Final[list[tuple[str, Handler]]] = [
    ("/v2/models/{model}/infer", v2.infer),
    ("/v2/models/{model}/versions/{version}/infer", v2.infer),
    ("/v2/models/{model}/generate", generate.generate),
    ("/v2/models/{model}/versions/{version}/generate", generate.generate),
    ("/v2/models/{model}/generate_stream", generate.generate_stream),
    ("/v2/models/{model}/versions/{version}/generate_stream", generate.generate_stream),
    ("/predict", simple.predict),
    ("/models/{model}/predict", simple.predict),
]

#: Paths that are never rate limited: probes and scrapes must get through.
RATE_LIMIT_EXEMPT: Final = frozenset(
    {"/healthz", "/ready", "/metrics", "/v2/health/live", "/v2/health/ready"}
)


class InferdApp(FastAPI):
    """FastAPI with two things in front of its stack: the per-client rate limit, and the
    raw inference routes."""

    raw_routes: RawRoutes
    limiter: RateLimiter | None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" or kind == "websocket":
            if self.limiter is not None and scope["path"] not in RATE_LIMIT_EXEMPT:
                client = scope.get("client")
                try:
                    self.limiter.check(client[0] if client else "unknown")
                except ResourceExhausted as exc:
                    if kind == "http":
                        await error_response(exc)(scope, receive, send)
                    else:
                        await send({"type": "websocket.close", "code": 1008})
                    return
            if kind == "http":
                matched = self.raw_routes.match(scope["path"])
                if matched is not None:
                    await self.raw_routes.serve(matched, self.state.service, scope, receive, send)
                    return
        await super().__call__(scope, receive, send)


def create_app(service: InferenceService, limiter: RateLimiter | None = None) -> InferdApp:
    """The ASGI app; ``limiter`` is the process's shared one (by default, one of its own
    when ``safeguards.rate_limit`` is on)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Ports open at once (liveness answers); /ready turns 200 once every model loaded.
        loading = asyncio.create_task(service.start())
        yield
        loading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loading
        await streams.close_all(service.settings.server.shutdown_grace_s)
        await service.stop()
        json.close()

    app = InferdApp(
        title="inferd",
        version=__version__,
        description="Model inference server: Open Inference Protocol (KServe V2) and a simple API.",
        lifespan=lifespan,
        docs_url=None,  # served from local files by add_docs
        redoc_url=None,
    )
    app.state.service = service
    app.state.streams = streams = StreamRegistry()
    app.state.json = json = JsonParser(service.settings.safeguards.json_offload_bytes)
    app.raw_routes = RawRoutes(RAW_ROUTES, json)
    app.limiter = limiter or rate_limiter(service.settings.safeguards.rate_limit)
    for path in websocket.PATHS:
        app.router.routes.append(WebSocketRoute(path, websocket.stream))
    app.include_router(v2.router())
    app.include_router(simple.router())

    async def on_inferd_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, InferdError)
        return error_response(exc)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        return internal_error_response(exc)

    app.add_exception_handler(InferdError, on_inferd_error)
    app.add_exception_handler(Exception, on_unexpected)
    _install_not_found(app)
    add_docs(app)
    document_raw_routes(app)
    return app


def _install_not_found(app: FastAPI) -> None:
    """Unknown paths and wrong methods answer in the one JSON error shape."""
    from starlette.exceptions import HTTPException as StarletteHTTPException

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        detail: Any = exc.detail
        return Response(
            b'{"error":' + _quote(str(detail)) + b"}",
            status_code=exc.status_code,
            media_type="application/json",
            headers=exc.headers,
        )

    app.add_exception_handler(StarletteHTTPException, on_http_error)


def _quote(text: str) -> bytes:
    import orjson

    return orjson.dumps(text)
