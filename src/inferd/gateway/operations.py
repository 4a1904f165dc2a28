"""What a request asks to do, as the gateway sees it.

Every REST route and WebSocket path (the HTTP route table, ``inferd.http.routes``) and
every gRPC method (:data:`GRPC_METHODS`) maps to one :class:`Operation`; the gateway
decides from the operation alone (see :mod:`inferd.gateway.admission`). A gRPC method not
in the table is ``METADATA`` (reflection's methods): it needs what reading the server's
metadata needs, then grpc answers it (UNIMPLEMENTED when no one serves it).
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
    _V2 + "SystemSharedMemoryStatus": Operation.INFER,
    _V2 + "SystemSharedMemoryRegister": Operation.INFER,
    _V2 + "SystemSharedMemoryUnregister": Operation.INFER,
    _SIMPLE + "Predict": Operation.INFER,
    _SIMPLE + "PredictStream": Operation.STREAM,
}


def grpc_operation(method: str) -> Operation:
    return GRPC_METHODS.get(method, Operation.METADATA)
