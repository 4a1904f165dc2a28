"""What a request asks to do, as the gateway sees it: one table per protocol.

Every REST route, WebSocket path and gRPC method maps to one :class:`Operation`; the
gateway decides from the operation alone (see :mod:`inferd.gateway.admission`). A path or
method not in the tables is ``METADATA``: it needs what reading the server's metadata
needs, then its own router answers it (404, UNIMPLEMENTED).
"""

from __future__ import annotations

import enum
from typing import Final


class Operation(enum.Enum):
    HEALTH = "health"  # probes: always open
    METRICS = "metrics"
    METADATA = "metadata"
    INFER = "infer"
    STREAM = "stream"
    ADMIN = "admin"  # the control API: repository index, load, unload, traffic, rollout, shadow
    STATIC = "static"  # the dashboard's page, script and style: files holding no data


#: REST and WebSocket paths -> operation; ``{model}`` and ``{version}`` match one segment.
REST_ROUTES: Final[tuple[tuple[str, Operation], ...]] = (
    ("/healthz", Operation.HEALTH),
    ("/ready", Operation.HEALTH),
    ("/v2/health/live", Operation.HEALTH),
    ("/v2/health/ready", Operation.HEALTH),
    ("/v2/models/{model}/ready", Operation.HEALTH),
    ("/v2/models/{model}/versions/{version}/ready", Operation.HEALTH),
    ("/metrics", Operation.METRICS),
    ("/v2/models/{model}/infer", Operation.INFER),
    ("/v2/models/{model}/versions/{version}/infer", Operation.INFER),
    ("/v2/models/{model}/generate", Operation.INFER),
    ("/v2/models/{model}/versions/{version}/generate", Operation.INFER),
    ("/predict", Operation.INFER),
    ("/models/{model}/predict", Operation.INFER),
    ("/predict/stream", Operation.STREAM),
    ("/v2/models/{model}/stream", Operation.STREAM),
    ("/v2/models/{model}/versions/{version}/stream", Operation.STREAM),
    ("/v2/models/{model}/generate_stream", Operation.STREAM),
    ("/v2/models/{model}/versions/{version}/generate_stream", Operation.STREAM),
    ("/v2/repository/index", Operation.ADMIN),
    ("/v2/repository/models/{model}/load", Operation.ADMIN),
    ("/v2/repository/models/{model}/unload", Operation.ADMIN),
    ("/v2/models/{model}/traffic", Operation.ADMIN),
    ("/v2/models/{model}/rollout", Operation.ADMIN),
    # GET shows recent requests' inputs (users' data), PUT changes what is mirrored.
    ("/v2/models/{model}/shadow", Operation.ADMIN),
    # The dashboard: its files are open (a browser cannot send a key to load them); its
    # data is metadata, and shows a caller only what its scope may read.
    ("/dashboard", Operation.STATIC),
    ("/dashboard/state", Operation.METADATA),
    ("/dashboard/{asset}", Operation.STATIC),
)

_V2: Final = "/inference.GRPCInferenceService/"
_SIMPLE: Final = "/inferd.simple.InferenceService/"

#: Full gRPC method names -> operation.
GRPC_METHODS: Final[dict[str, Operation]] = {
    _V2 + "ServerLive": Operation.HEALTH,
    _V2 + "ServerReady": Operation.HEALTH,
    _V2 + "ModelReady": Operation.HEALTH,
    "/grpc.health.v1.Health/Check": Operation.HEALTH,
    "/grpc.health.v1.Health/Watch": Operation.HEALTH,
    _V2 + "ServerMetadata": Operation.METADATA,
    _V2 + "ModelMetadata": Operation.METADATA,
    _V2 + "ModelConfig": Operation.METADATA,
    _V2 + "ModelStatistics": Operation.METADATA,
    _V2 + "ModelInfer": Operation.INFER,
    _V2 + "ModelStreamInfer": Operation.STREAM,
    _V2 + "RepositoryIndex": Operation.ADMIN,
    _V2 + "RepositoryModelLoad": Operation.ADMIN,
    _V2 + "RepositoryModelUnload": Operation.ADMIN,
    _SIMPLE + "Predict": Operation.INFER,
    _SIMPLE + "PredictStream": Operation.STREAM,
}

#: Paths remembered with their operation; a client sending many distinct paths fills the
#: memory up to this many, then it starts again.
_CACHE_SIZE: Final = 4096


Classified = tuple[Operation, str | None, str | None]


class PathTable:
    """Matches a request path against :data:`REST_ROUTES` (or another table)."""

    def __init__(self, routes: tuple[tuple[str, Operation], ...] = REST_ROUTES) -> None:
        self._by_length: dict[int, list[tuple[tuple[str, ...], Operation]]] = {}
        for path, operation in routes:
            segments = tuple(path.split("/"))
            self._by_length.setdefault(len(segments), []).append((segments, operation))
        self._seen: dict[str, Classified] = {}

    def classify(self, path: str) -> Classified:
        """The operation of ``path``, and the model and version it names (or None)."""
        try:
            return self._seen[path]
        except KeyError:
            pass
        found = self._lookup(path)
        if len(self._seen) >= _CACHE_SIZE:
            self._seen.clear()
        self._seen[path] = found
        return found

    def _lookup(self, path: str) -> Classified:
        parts = path.split("/")
        for segments, operation in self._by_length.get(len(parts), ()):
            params = _match(segments, parts)
            if params is not None:
                return operation, params.get("model"), params.get("version")
        return Operation.METADATA, None, None


def _match(segments: tuple[str, ...], parts: list[str]) -> dict[str, str] | None:
    """The ``{model}``/``{version}`` segments when ``parts`` match the pattern, else None."""
    params: dict[str, str] = {}
    for want, got in zip(segments, parts, strict=True):
        if want.startswith("{"):
            if not got:
                return None
            params[want[1:-1]] = got
        elif want != got:
            return None
    return params


def grpc_operation(method: str) -> Operation:
    return GRPC_METHODS.get(method, Operation.METADATA)
