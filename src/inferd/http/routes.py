"""The one route table of the HTTP port: every path, its methods, its operation, its handler.

Everything about paths is derived from :data:`ROUTES`:

- the front (``http/front.py``) matches a request's path once, here, and learns its route,
  the operation the gateway admits and the model and version the path names;
- a path that is not in the table is refused by the front (404) before admission: nothing
  is served, and nothing is admitted as something else;
- the fast inference routes (``handler`` set) are served straight from the match
  (``http/raw.py``), and their OpenAPI entries are written from their ``doc``
  (``http/openapi.py``);
- WebSocket paths (``websocket``) are registered from the table (``http/app.py``);
- the other routes (health, metadata, the control API, the docs) are the FastAPI
  router's: their handler and OpenAPI entry are its decorators, and ``tests/http/
  test_routes.py`` holds the router's paths and methods equal to the table's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Final

from inferd.gateway.operations import Operation
from inferd.http import generate, simple, v2
from inferd.http.raw import Handler

GET: Final = frozenset({"GET", "HEAD"})
POST: Final = frozenset({"POST"})
GET_PUT: Final = frozenset({"GET", "HEAD", "PUT"})
GET_PUT_DELETE: Final = frozenset({"GET", "HEAD", "PUT", "DELETE"})
NONE: Final[frozenset[str]] = frozenset()


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    """One path of the port; ``{model}`` and ``{version}`` match one non-empty segment."""

    path: str
    operation: Operation
    methods: frozenset[str] = GET
    #: A fast inference route's handler (served without FastAPI), else None.
    handler: Handler | None = None
    #: A fast route's OpenAPI summary and the kind of body it takes (``http/openapi.py``).
    doc: tuple[str, str] | None = None
    websocket: bool = False

    @property
    def direct(self) -> bool:
        """Answered from the connection when it can be (``http/direct.py``): a fast route
        whose answer is one body, not a stream."""
        return self.handler is not None and self.operation is Operation.INFER


_INFER_DOC: Final = (
    "Inference (JSON, or binary tensor data with Inference-Header-Content-Length)",
    "infer",
)
_GENERATE_DOC: Final = ("Generate: one answer (Triton's generate extension)", "generate")
_STREAM_DOC: Final = (
    "Generate: a streaming model's partials as Server-Sent Events",
    "generate",
)
_MODEL: Final = "/v2/models/{model}"
_VERSION: Final = "/v2/models/{model}/versions/{version}"

ROUTES: Final[tuple[Route, ...]] = (
    # probes
    Route("/healthz", Operation.HEALTH),
    Route("/ready", Operation.HEALTH),
    Route("/v2/health/live", Operation.HEALTH),
    Route("/v2/health/ready", Operation.HEALTH),
    Route(f"{_MODEL}/ready", Operation.HEALTH),
    Route(f"{_VERSION}/ready", Operation.HEALTH),
    Route("/metrics", Operation.METRICS),
    # inference: the fast routes
    Route(f"{_MODEL}/infer", Operation.INFER, POST, v2.infer, _INFER_DOC),
    Route(f"{_VERSION}/infer", Operation.INFER, POST, v2.infer, _INFER_DOC),
    Route(f"{_MODEL}/generate", Operation.INFER, POST, generate.generate, _GENERATE_DOC),
    Route(f"{_VERSION}/generate", Operation.INFER, POST, generate.generate, _GENERATE_DOC),
    Route(
        f"{_MODEL}/generate_stream",
        Operation.STREAM,
        POST,
        generate.generate_stream,
        _STREAM_DOC,
    ),
    Route(
        f"{_VERSION}/generate_stream",
        Operation.STREAM,
        POST,
        generate.generate_stream,
        _STREAM_DOC,
    ),
    Route(
        "/predict",
        Operation.INFER,
        POST,
        simple.predict,
        ("Predict with the default model", "predict"),
    ),
    Route(
        "/models/{model}/predict",
        Operation.INFER,
        POST,
        simple.predict,
        ("Predict with a named model", "predict"),
    ),
    # streams
    Route("/predict/stream", Operation.STREAM, NONE, websocket=True),
    Route(f"{_MODEL}/stream", Operation.STREAM, NONE, websocket=True),
    Route(f"{_VERSION}/stream", Operation.STREAM, NONE, websocket=True),
    # metadata (Open Inference Protocol and Triton's extensions)
    Route("/v2", Operation.METADATA),
    Route("/v2/models/stats", Operation.METADATA),
    Route(_MODEL, Operation.METADATA),
    Route(_VERSION, Operation.METADATA),
    Route(f"{_MODEL}/config", Operation.METADATA),
    Route(f"{_VERSION}/config", Operation.METADATA),
    Route(f"{_MODEL}/stats", Operation.METADATA),
    Route(f"{_VERSION}/stats", Operation.METADATA),
    # the control API
    Route("/v2/repository/index", Operation.ADMIN, POST),
    Route("/v2/repository/models/{model}/load", Operation.ADMIN, POST),
    Route("/v2/repository/models/{model}/unload", Operation.ADMIN, POST),
    Route(f"{_MODEL}/traffic", Operation.ADMIN, GET_PUT),
    Route(f"{_MODEL}/rollout", Operation.ADMIN, GET_PUT_DELETE),
    # GET shows recent requests' inputs (users' data), PUT changes what is mirrored.
    Route(f"{_MODEL}/shadow", Operation.ADMIN, GET_PUT),
    # system shared memory: the caller's own regions (core/serving/shm.py), for inference
    Route("/v2/systemsharedmemory/status", Operation.INFER),
    Route("/v2/systemsharedmemory/unregister", Operation.INFER, POST),
    Route("/v2/systemsharedmemory/region/{name}/status", Operation.INFER),
    Route("/v2/systemsharedmemory/region/{name}/register", Operation.INFER, POST),
    Route("/v2/systemsharedmemory/region/{name}/unregister", Operation.INFER, POST),
    # the dashboard: its files are open (a browser cannot send a key to load them); its
    # data is metadata, and shows a caller only what its scope may read
    Route("/dashboard", Operation.STATIC),
    Route("/dashboard/state", Operation.METADATA),
    Route("/dashboard/{asset}", Operation.STATIC),
    # the API's documentation (served from files in the package)
    Route("/docs", Operation.METADATA),
    Route("/openapi.json", Operation.METADATA),
    Route("/docs/static/{file}", Operation.METADATA),
)


@dataclasses.dataclass(frozen=True, slots=True)
class Match:
    """A path's route and the model and version it names."""

    route: Route
    model: str | None
    version: str | None


#: Paths remembered with their match; a client sending many distinct paths fills the
#: memory up to this many, then it starts again.
_CACHE_SIZE: Final = 4096


class RouteTable:
    """Matches request paths against routes (by default :data:`ROUTES`), once each."""

    def __init__(self, routes: Sequence[Route] = ROUTES) -> None:
        self.routes = tuple(routes)
        self._by_length: dict[int, list[tuple[tuple[str, ...], Route]]] = {}
        for route in self.routes:
            segments = tuple(route.path.split("/"))
            self._by_length.setdefault(len(segments), []).append((segments, route))
        self._seen: dict[str, Match | None] = {}

    def match(self, path: str) -> Match | None:
        """The route of ``path`` and the names it captures, or None: no such route."""
        try:
            return self._seen[path]
        except KeyError:
            pass
        found = self._lookup(path)
        if len(self._seen) >= _CACHE_SIZE:
            self._seen.clear()
        self._seen[path] = found
        return found

    def _lookup(self, path: str) -> Match | None:
        parts = path.split("/")
        for segments, route in self._by_length.get(len(parts), ()):
            params = _match(segments, parts)
            if params is not None:
                return Match(route, params.get("model"), params.get("version"))
        return None

    def websocket_paths(self) -> list[str]:
        return [route.path for route in self.routes if route.websocket]

    def fast_routes(self) -> list[Route]:
        return [route for route in self.routes if route.handler is not None]


def _match(segments: tuple[str, ...], parts: list[str]) -> dict[str, str] | None:
    """The captured segments when ``parts`` match the pattern, else None."""
    params: dict[str, str] = {}
    for want, got in zip(segments, parts, strict=True):
        if want.startswith("{"):
            if not got:
                return None
            params[want[1:-1]] = got
        elif want != got:
            return None
    return params
