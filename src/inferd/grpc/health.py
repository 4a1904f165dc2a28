"""The standard ``grpc.health.v1.Health`` service, answered from the server's readiness.

``Check`` reads ``Catalog.ready()`` on every call, so it is never stale: SERVING
once every model is loaded, NOT_SERVING while loading and when draining. The server ("")
and every served service name report the same status.

``Watch`` calls share one poll of readiness (every :data:`WATCH_INTERVAL_S`, only while
anyone watches) and wake when it changes, so a watcher costs nothing between changes; at
most ``limits.grpc.max_health_watchers`` are open at once, past it RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Final

import grpc

from inferd.core.catalog import Catalog
from inferd.errors import clip
from inferd.grpc.protos import health_pb2
from inferd.grpc.register import Context

#: How often readiness is read while Watch calls are open.
WATCH_INTERVAL_S: Final = 0.5

Status = health_pb2.HealthCheckResponse.ServingStatus


class HealthServicer:
    def __init__(self, catalog: Catalog, service_names: Iterable[str], max_watchers: int) -> None:
        self._catalog = catalog
        self._names = frozenset({"", *service_names})
        self._max_watchers = max_watchers
        self._watchers = 0
        self._changed = asyncio.Event()  # replaced by a new one at every change
        self._poller: asyncio.Task[None] | None = None

    def _status(self, name: str) -> Status:
        if name not in self._names:
            return Status.SERVICE_UNKNOWN
        return Status.SERVING if self._catalog.ready() else Status.NOT_SERVING

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: Context
    ) -> health_pb2.HealthCheckResponse:
        status = self._status(request.service)
        if status == Status.SERVICE_UNKNOWN:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"unknown service {clip(repr(request.service))}"
            )
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: Context
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        """Sends the status now and again at every change, until the client leaves."""
        if self._watchers >= self._max_watchers:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{self._watchers} health watchers are open; the limit is {self._max_watchers}",
            )
        self._watchers += 1
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll())
        try:
            last: Status | None = None
            while True:
                changed = self._changed
                status = self._status(request.service)
                if status != last:
                    yield health_pb2.HealthCheckResponse(status=status)
                    last = status
                await changed.wait()
        finally:
            self._watchers -= 1
            if self._watchers == 0 and self._poller is not None:
                poller, self._poller = self._poller, None
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller

    async def _poll(self) -> None:
        """Wake every watcher when readiness changes."""
        ready = self._catalog.ready()
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            now = self._catalog.ready()
            if now != ready:
                ready = now
                changed, self._changed = self._changed, asyncio.Event()
                changed.set()
