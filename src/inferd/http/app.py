"""The ASGI application: routes, middleware and error handling assembled in one place."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from inferd import __version__
from inferd.core.service import InferenceService
from inferd.errors import InferdError
from inferd.http import simple, v2, websocket
from inferd.http.errors import error_response, internal_error_response
from inferd.http.middleware import RateLimitMiddleware
from inferd.http.openapi import document_lean_routes

Endpoint = Callable[[Request], Awaitable[Response]]


def _guarded(endpoint: Endpoint) -> Endpoint:
    """Lean routes translate errors themselves (they bypass FastAPI's handlers' cost)."""

    async def run(request: Request) -> Response:
        try:
            return await endpoint(request)
        except InferdError as exc:
            return error_response(exc)
        except Exception as exc:
            return internal_error_response(exc)

    return run


LEAN_ROUTES: list[tuple[str, Endpoint]] = [
    ("/v2/models/{model}/infer", v2.infer),
    ("/v2/models/{model}/versions/{version}/infer", v2.infer),
    ("/predict", simple.predict),
    ("/models/{model}/predict", simple.predict),
]


def create_app(service: InferenceService) -> FastAPI:
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

    app = FastAPI(
        title="inferd",
        version=__version__,
        description="Model inference server: Open Inference Protocol (KServe V2) and a simple API.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.streams = streams = websocket.Streams()
    for path, endpoint in LEAN_ROUTES:
        app.router.routes.append(Route(path, _guarded(endpoint), methods=["POST"]))
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
    if service.settings.safeguards.rate_limit.enabled:
        app.add_middleware(RateLimitMiddleware, settings=service.settings.safeguards.rate_limit)
    document_lean_routes(app)
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
