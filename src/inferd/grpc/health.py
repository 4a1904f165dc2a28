"""The standard ``grpc.health.v1.Health`` service, answered from the service's readiness.

The status is read from ``InferenceService.ready()`` on every call, so it can never be
stale: SERVING once every model is loaded, NOT_SERVING while loading and when draining.
The server ("") and every served service name report the same status.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any, Final

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from inferd.core.service import InferenceService
from inferd.errors import clip

#: How often a Watch call looks for a change of status.
WATCH_INTERVAL_S: Final = 0.5

Status = health_pb2.HealthCheckResponse.ServingStatus


class HealthServicer(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    def __init__(self, service: InferenceService, service_names: Iterable[str]) -> None:
        self._service = service
        self._names = frozenset({"", *service_names})

    def _status(self, name: str) -> Any:
        if name not in self._names:
            return Status.SERVICE_UNKNOWN
        return Status.SERVING if self._service.ready() else Status.NOT_SERVING

    async def Check(self, request: Any, context: Any) -> Any:
        status = self._status(request.service)
        if status == Status.SERVICE_UNKNOWN:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"unknown service {clip(repr(request.service))}"
            )
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: Any, context: Any) -> AsyncIterator[Any]:
        """Sends the status now and again at every change, until the client leaves."""
        last = None
        while True:
            status = self._status(request.service)
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            await asyncio.sleep(WATCH_INTERVAL_S)
