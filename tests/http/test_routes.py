"""The one route table: every path's operation and names, matched once; FastAPI's router
serves exactly the table's other routes; a path not in the table is refused."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute
from starlette.routing import Mount, WebSocketRoute

from inferd.gateway.operations import Operation
from inferd.http.app import create_app
from inferd.http.routes import ROUTES, RouteTable
from tests.conftest import NodeFactory, asgi_client


@pytest.mark.parametrize(
    ("path", "operation", "model", "version"),
    [
        ("/healthz", Operation.HEALTH, None, None),
        ("/v2/health/ready", Operation.HEALTH, None, None),
        ("/v2/models/tiny/ready", Operation.HEALTH, "tiny", None),
        ("/metrics", Operation.METRICS, None, None),
        ("/v2/models/tiny/infer", Operation.INFER, "tiny", None),
        ("/v2/models/tiny/versions/2/infer", Operation.INFER, "tiny", "2"),
        ("/predict", Operation.INFER, None, None),
        ("/models/tiny/predict", Operation.INFER, "tiny", None),
        ("/predict/stream", Operation.STREAM, None, None),
        ("/v2/models/tiny/stream", Operation.STREAM, "tiny", None),
        ("/v2/models/tiny/generate_stream", Operation.STREAM, "tiny", None),
        ("/v2/repository/index", Operation.ADMIN, None, None),
        ("/v2/repository/models/tiny/unload", Operation.ADMIN, "tiny", None),
        ("/v2/models/tiny/traffic", Operation.ADMIN, "tiny", None),
        ("/v2/models/tiny/shadow", Operation.ADMIN, "tiny", None),
        ("/v2/models/tiny", Operation.METADATA, "tiny", None),
        ("/v2/models/tiny/versions/3/config", Operation.METADATA, "tiny", "3"),
    ],
)
def test_a_path_is_matched_to_its_route_once(
    path: str, operation: Operation, model: str | None, version: str | None
) -> None:
    table = RouteTable()
    match = table.match(path)
    assert match is not None
    assert (match.route.operation, match.model, match.version) == (operation, model, version)
    assert table.match(path) is match  # remembered


@pytest.mark.parametrize("path", ["/nothing/here", "/v2/models//infer", "/v2/models/a/b/c/d"])
def test_a_path_not_in_the_table_matches_nothing(path: str) -> None:
    assert RouteTable().match(path) is None


def _served(routes: list[object]) -> set[tuple[str, frozenset[str]]]:
    """The FastAPI application's paths with their methods (HEAD as GET implies it)."""
    served: set[tuple[str, frozenset[str]]] = set()
    by_path: dict[str, set[str]] = {}
    for route in routes:
        if isinstance(route, APIRoute) or type(route).__name__ == "Route":
            methods = set(getattr(route, "methods", ()) or ())
            if "GET" in methods:
                methods.add("HEAD")
            by_path.setdefault(route.path, set()).update(methods)  # type: ignore[attr-defined]
        elif isinstance(route, WebSocketRoute):
            served.add((route.path, frozenset()))
        elif isinstance(route, Mount):
            by_path.setdefault(route.path + "/{file}", set()).update({"GET", "HEAD"})
        else:  # an included router (its routes' paths carry its prefix)
            served |= _served(list(route.original_router.routes))  # type: ignore[attr-defined]
    served |= {(path, frozenset(methods)) for path, methods in by_path.items()}
    return served


async def test_fastapi_serves_exactly_the_tables_other_routes(
    node_factory: NodeFactory,
) -> None:
    app = create_app(node_factory(None)).app
    table = {(r.path, r.methods) for r in ROUTES if r.handler is None}
    assert _served(list(app.routes)) == table


def test_every_fast_route_has_an_openapi_entry_and_posts() -> None:
    for route in RouteTable().fast_routes():
        assert route.doc is not None
        assert route.methods == frozenset({"POST"})


async def test_an_unknown_path_is_refused_before_admission(
    example_repo: Path, node_factory: NodeFactory
) -> None:
    # With keys required, a path that is not a route is not admitted as anything: 404,
    # not 401 (it was a metadata read once).
    node = node_factory(
        example_repo, server={"require_api_key": True, "api_keys": ["reader:infer:" + "0" * 64]}
    )
    async with await asgi_client(node) as client:
        for path in ("/nothing/here", "/v2/models//infer", "/predict/extra"):
            answer = await client.get(path)
            assert answer.status_code == 404, path
            assert answer.json()["error"].startswith("Not Found: no route ")
        assert (await client.get("/v2/models/tiny")).status_code == 401


async def test_the_openapi_document_lists_every_http_route(
    example_client: httpx.AsyncClient,
) -> None:
    paths = (await example_client.get("/openapi.json")).json()["paths"]
    documented = {r.path for r in ROUTES if not r.websocket and r.path not in _UNDOCUMENTED}
    assert documented == set(paths)


#: Routes left out of the OpenAPI document: the document itself, the page showing it, and
#: the dashboard's page files (its data, /dashboard/state, is documented).
_UNDOCUMENTED = {
    "/docs",
    "/openapi.json",
    "/docs/static/{file}",
    "/dashboard",
    "/dashboard/{asset}",
}
