"""The HTTP application: the route table's fast routes and the FastAPI router, behind the
one front."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import WebSocketRoute

from inferd import __version__
from inferd.core.node import Node
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


def default_gateway(node: Node) -> Gateway:
    """A gateway of the node's settings, with a rate limiter of its own when
    ``safeguards.rate_limit`` is on."""
    settings = node.settings
    return Gateway(
        settings.server,
        rate_limiter(settings.safeguards.rate_limit, settings.storage, node.metrics),
    )


def create_app(node: Node, gateway: Gateway | None = None) -> Front:
    """The ASGI app of a node; ``gateway`` is the process's shared one (by default, its
    own). The app starts and stops nothing of the node: the server does (inferd.server)."""
    service = node.service

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # The app's own: its streams get their last answers, its JSON threads end.
        await streams.close_all(node.settings.server.shutdown_grace_s)
        json.close()

    app = FastAPI(
        title="inferd",
        version=__version__,
        description="Model inference server: Open Inference Protocol (KServe V2) and a simple API.",
        lifespan=lifespan,
        docs_url=None,  # served from local files by add_docs
        redoc_url=None,
    )
    app.state.node = node
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
    app.state.gateway = gateway = gateway or default_gateway(node)
    return Front(app, service, gateway, routes, json, service.settings.server)
