"""The HTTP application: the route table's fast routes and the FastAPI router, behind the
one front."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import WebSocketRoute

from inferd import __version__
from inferd.core.service import InferenceService
from inferd.core.serving.streams import StreamRegistry
from inferd.errors import InferdError
from inferd.gateway.admission import Gateway
from inferd.gateway.ratelimit import rate_limiter
from inferd.http import dashboard, rollout, shm, simple, v2, websocket
from inferd.http.docs import add_docs
from inferd.http.errors import error_response
from inferd.http.front import Front
from inferd.http.jsonwork import JsonParser
from inferd.http.openapi import document_fast_routes
from inferd.http.routes import RouteTable


def default_gateway(service: InferenceService) -> Gateway:
    """A gateway of the service's settings, with a rate limiter of its own when
    ``safeguards.rate_limit`` is on."""
    settings = service.settings
    return Gateway(
        settings.server,
        rate_limiter(settings.safeguards.rate_limit, settings.storage, service.metrics),
    )


def create_app(service: InferenceService, gateway: Gateway | None = None) -> Front:
    """The ASGI app; ``gateway`` is the process's shared one (by default, its own)."""

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

    app = FastAPI(
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
    routes = RouteTable()
    for path in routes.websocket_paths():
        app.router.routes.append(WebSocketRoute(path, websocket.stream))
    app.include_router(v2.router())
    app.include_router(shm.router())
    app.include_router(simple.router())
    app.include_router(rollout.router())
    if service.settings.server.dashboard:
        app.include_router(dashboard.router())

    async def on_error(request: Request, exc: Exception) -> Response:
        return error_response(exc)

    # Core errors, unknown paths and wrong methods, and bugs: all in the one error shape.
    for kind in (InferdError, HTTPException, Exception):
        app.add_exception_handler(kind, on_error)
    add_docs(app)
    document_fast_routes(app, routes.fast_routes())
    app.state.gateway = gateway = gateway or default_gateway(service)
    return Front(app, service, gateway, routes, json, service.settings.server)
