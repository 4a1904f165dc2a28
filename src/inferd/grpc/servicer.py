"""gRPC handlers: decode, call the InferenceService, encode. Nothing else lives here."""

from __future__ import annotations

import asyncio
import functools
import time
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any, Final

import numpy as np

from inferd.core.service import InferenceService
from inferd.errors import InferdError, InvalidArgument
from inferd.gateway.auth import check_admin, is_admin
from inferd.gateway.ratelimit import RateLimiter
from inferd.grpc import convert
from inferd.grpc.errors import Handler, abort, status_of, translated
from inferd.grpc.handlers import Malformed
from inferd.grpc.protos import grpc_service_pb2 as pb
from inferd.grpc.protos import grpc_service_pb2_grpc as pb_grpc
from inferd.grpc.protos import simple_pb2, simple_pb2_grpc

#: Requests of one stream that may be in flight at once; responses still leave in order.
STREAM_WINDOW: Final = 32


def deadline_of(context: Any) -> float | None:
    """The client's deadline as an absolute ``time.monotonic()``, or None without one."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def client_host(peer: str) -> str | None:
    """The address of a peer string such as ``ipv4:127.0.0.1:5000`` or ``ipv6:[::1]:5000``."""
    kind, _, address = urllib.parse.unquote(peer).partition(":")
    if kind not in ("ipv4", "ipv6"):
        return None
    return address.rpartition(":")[0].strip("[]") or None


class _Gated:
    """What both servicers share: the service, and the process's rate limiter keyed by the
    client's address (probes are not limited, as on REST)."""

    def __init__(self, service: InferenceService, limiter: RateLimiter | None = None) -> None:
        self._service = service
        self._limiter = limiter

    def admit(self, context: Any) -> None:
        if self._limiter is not None:
            self._limiter.check(client_host(context.peer()) or "unknown")

    async def admit_stream(self, context: Any) -> None:
        """A stream is admitted (or refused) once, when it opens."""
        try:
            self.admit(context)
        except InferdError as exc:
            await abort(context, exc)


def limited(handler: Handler) -> Handler:
    """Unary handlers that count against the caller's rate limit (under ``translated``)."""

    @functools.wraps(handler)
    async def run(self: _Gated, request: Any, context: Any) -> Any:
        self.admit(context)
        return await handler(self, request, context)

    return run  # type: ignore[return-value]


class InferenceServicer(_Gated, pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """``inference.GRPCInferenceService``: the Open Inference Protocol with Triton's
    extensions."""

    # -- health and metadata -----------------------------------------------------------------

    @translated
    async def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=self._service.live())

    @translated
    async def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self._service.ready())

    @translated
    async def ModelReady(self, request: Any, context: Any) -> Any:
        ready = self._service.model_ready(request.name, request.version or None)
        return pb.ModelReadyResponse(ready=ready)

    @translated
    @limited
    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        return pb.ServerMetadataResponse(**self._service.server_metadata())

    @translated
    @limited
    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        doc = self._service.model_metadata(request.name, request.version or None)
        return convert.model_metadata(doc)

    @translated
    @limited
    async def ModelConfig(self, request: Any, context: Any) -> Any:
        doc = self._service.model_config(request.name, request.version or None)
        return convert.model_config(doc)

    @translated
    @limited
    async def ModelStatistics(self, request: Any, context: Any) -> Any:
        doc = self._service.model_stats(request.name or None, request.version or None)
        return convert.model_statistics(doc)

    # -- inference ---------------------------------------------------------------------------

    @translated
    @limited
    async def ModelInfer(self, request: Any, context: Any) -> Any:
        decoded = convert.decode_infer_request(request, deadline_of(context))
        return convert.encode_infer_response(await self._service.infer(decoded))

    async def ModelStreamInfer(self, requests: Any, context: Any) -> AsyncIterator[Any]:
        """Answers every request, in order. Up to STREAM_WINDOW requests run at once, so
        a client that pipelines its stream gets them batched together."""
        await self.admit_stream(context)
        deadline = deadline_of(context)
        slots = asyncio.Semaphore(STREAM_WINDOW)
        queue: asyncio.Queue[asyncio.Task[Any] | None] = asyncio.Queue()

        async def read() -> None:
            try:
                async for request in requests:
                    await slots.acquire()
                    queue.put_nowait(asyncio.ensure_future(self._stream_one(request, deadline)))
            finally:
                queue.put_nowait(None)

        reader = asyncio.ensure_future(read())
        try:
            while (task := await queue.get()) is not None:
                response = await task
                slots.release()
                yield response
            await reader
        finally:
            reader.cancel()
            left = [t for t in (queue.get_nowait() for _ in range(queue.qsize())) if t]
            for task in left:
                task.cancel()
            await asyncio.gather(reader, *left, return_exceptions=True)

    async def _stream_one(self, request: Any, deadline: float | None) -> Any:
        if isinstance(request, Malformed):
            return pb.ModelStreamInferResponse(error_message=request.message)
        try:
            decoded = convert.decode_infer_request(request, deadline)
            response = await self._service.infer(decoded)
        except Exception as exc:
            return pb.ModelStreamInferResponse(
                error_message=status_of(exc)[1],
                infer_response=pb.ModelInferResponse(
                    model_name=request.model_name,
                    model_version=request.model_version,
                    id=request.id,
                ),
            )
        return pb.ModelStreamInferResponse(infer_response=convert.encode_infer_response(response))

    # -- model repository --------------------------------------------------------------------

    @translated
    @limited
    async def RepositoryIndex(self, request: Any, context: Any) -> Any:
        metadata = dict(context.invocation_metadata() or ())
        full = is_admin(
            self._service.settings.server.admin_token,
            metadata.get("authorization"),
            client_host(context.peer()),
        )
        return convert.repository_index(self._service.repository_index(full), request.ready)

    @translated
    @limited
    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:
        self._admin(context)
        if request.parameters:
            raise InvalidArgument(
                f"load parameters {sorted(request.parameters)} are not supported; change "
                "the model's files and model.yaml instead"
            )
        await self._service.load_model(request.model_name)
        return pb.RepositoryModelLoadResponse()

    @translated
    @limited
    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:
        self._admin(context)
        await self._service.unload_model(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    def _admin(self, context: Any) -> None:
        metadata = dict(context.invocation_metadata() or ())
        check_admin(
            self._service.settings.server.admin_token,
            metadata.get("authorization"),
            client_host(context.peer()),
        )


class SimpleServicer(_Gated, simple_pb2_grpc.InferenceServiceServicer):  # type: ignore[misc]
    """``inferd.simple.InferenceService``: the simple API (POST /predict) over gRPC."""

    @translated
    @limited
    async def Predict(self, request: Any, context: Any) -> Any:
        return await self._predict(request, deadline_of(context))

    async def PredictStream(self, requests: Any, context: Any) -> AsyncIterator[Any]:
        """One response per request, in order; the first failure ends the stream."""
        await self.admit_stream(context)
        deadline = deadline_of(context)
        async for request in requests:
            try:
                if isinstance(request, Malformed):
                    raise InvalidArgument(request.message)
                response = await self._predict(request, deadline)
            except Exception as exc:
                await abort(context, exc)
            yield response

    async def _predict(self, request: Any, deadline: float | None) -> Any:
        result = await self._service.predict(
            request.model_name or None,
            request.model_version or None,
            list(request.inputs),
            batched=False,
            protocol="grpc",
            deadline=deadline,
            flat=True,
        )
        try:
            predictions = np.asarray(result.predictions, dtype=np.float32).reshape(-1)
        except (TypeError, ValueError):
            raise InvalidArgument(
                "the model's first output is not numeric; call ModelInfer instead"
            ) from None
        return simple_pb2.PredictResponse(
            predictions=predictions.tolist(),
            model_version=result.model_version,
            latency_ms=result.latency_ms,
        )
