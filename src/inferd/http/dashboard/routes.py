"""The dashboard's routes. The files are open to all: they hold no data, and a browser
cannot send a key to load a page. ``/dashboard/state`` needs what metadata needs (an infer
key when ``server.require_api_key``), and holds only the parts the caller's key may read
(``gateway.admission.Gateway.allows``). The page asks for a key when the state is refused
and sends it as ``Authorization: Bearer``; it keeps it in the tab's session storage."""

from __future__ import annotations

import importlib.resources
from typing import Final

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from inferd.core.node import Node
from inferd.errors import NotFound
from inferd.gateway.admission import Gateway
from inferd.gateway.operations import Operation
from inferd.http.dashboard.state import state
from inferd.http.front import SCOPE_KEY, RequestInfo
from inferd.http.schemas import answers

#: File name -> content type; nothing else under /dashboard/ is served.
ASSETS: Final[dict[str, str]] = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
#: The page may load its own files and call its own origin; nothing else.
SECURITY_HEADERS: Final = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "x-content-type-options": "nosniff",
    "cache-control": "no-cache",
}


def _read(name: str) -> bytes:
    return importlib.resources.files("inferd.http.dashboard").joinpath("static", name).read_bytes()


def router() -> APIRouter:
    api = APIRouter(prefix="/dashboard", tags=["Dashboard"])
    files = {name: _read(name) for name in ASSETS}

    @api.get("", include_in_schema=False)
    async def page() -> Response:
        return Response(
            files["index.html"], media_type=ASSETS["index.html"], headers=SECURITY_HEADERS
        )

    @api.get(
        "/state",
        summary="The dashboard's data: models, versions, states, splits and live counters, "
        "as far as the caller's key may read them",
        responses=answers({"type": "object"}, 401, 403, 429),
    )
    async def current(request: Request) -> Response:
        node: Node = request.app.state.node
        gateway: Gateway = request.app.state.gateway
        info: RequestInfo = request.scope[SCOPE_KEY]

        def allowed(operation: Operation) -> bool:
            return gateway.allows(info.principal, operation)

        return Response(
            orjson.dumps(state(node, allowed)),
            media_type="application/json",
            headers={"cache-control": "no-store"},
        )

    @api.get("/{asset}", include_in_schema=False)
    async def asset(asset: str) -> Response:
        if asset not in ASSETS or asset == "index.html":
            raise NotFound(f"/dashboard/{asset[:64]} is not a file of the dashboard")
        return Response(files[asset], media_type=ASSETS[asset], headers=SECURITY_HEADERS)

    return api
