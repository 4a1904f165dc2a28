"""gRPC servicers: decode, call the node (data plane, catalog or control plane), encode.
Nothing else lives here.

Parsing, admission, error translation and the access log are the one wrapper's
(``inferd.grpc.register``), which serves each method of a service from the servicer's
method of the same name."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Final, TypeVar

import grpc
import numpy as np
from google.protobuf.message import Message

from inferd.core.node import Node
from inferd.core.serving.streams import End, OrderedStream, StreamLimits, StreamRegistry
from inferd.errors import InvalidArgument
from inferd.gateway import caller, routingkey, streams
from inferd.grpc import convert
from inferd.grpc.errors import add_trailing, status_of
from inferd.grpc.protos import grpc_service_pb2 as pb
from inferd.grpc.protos import simple_pb2
from inferd.grpc.register import Context, Malformed

#: Request parameters of Triton's decoupled streams.
FINAL: Final = "triton_final_response"
EMPTY_FINAL: Final = "triton_enable_empty_final_response"

#: How a stream's call ends, by why it stopped reading (None: OK, or nobody to tell).
STREAM_END: Final[dict[End, tuple[grpc.StatusCode, str] | None]] = {
    End.CLIENT_DONE: None,
    End.CLIENT_GONE: None,
    End.IDLE: (grpc.StatusCode.DEADLINE_EXCEEDED, "idle timeout"),
    End.TOO_LARGE: (grpc.StatusCode.RESOURCE_EXHAUSTED, "message too large"),
    End.RATE_LIMITED: (grpc.StatusCode.RESOURCE_EXHAUSTED, "message rate limit exceeded"),
    End.SHUTDOWN: (grpc.StatusCode.UNAVAILABLE, "server shutting down"),
}
#: Trailing-metadata key with ``hit`` or ``miss`` for models with the prediction cache on.
CACHE_METADATA: Final = "x-cache"


Request = TypeVar("Request", bound=Message)
Response = TypeVar("Response", bound=Message)


def deadline_of(context: Context) -> float | None:
    """The client's deadline as an absolute ``time.monotonic()``, or None without one."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class _Servicer:
    """What both servicers share: the node's parts and the open streams. Admission (keys,
    scopes, the rate limit) is the one wrapper's (grpc/register.py)."""

    def __init__(self, node: Node, streams: StreamRegistry | None = None) -> None:
        self._service = node.service
        self._catalog = node.catalog
        self._control = node.control
        self._group = node.group
        self._streams = streams or StreamRegistry()
        self._limits = StreamLimits.of(node.settings)

    async def _ordered(
        self,
        requests: AsyncIterator[Request | Malformed],
        context: Context,
        serve: Callable[[int, Request | Malformed], AsyncIterator[Response]],
        fail: Callable[[Request | Malformed, Exception], Response],
    ) -> AsyncIterator[Response]:
        """A bidirectional stream through the core's ordered stream; the call ends with the
        status of why reading ended (OK once the client finished sending)."""
        iterator = aiter(requests)

        async def receive() -> tuple[Request | Malformed, int] | None:
            request = await anext(iterator, None)
            if request is None:
                return None
            return request, 0 if isinstance(request, Malformed) else request.ByteSize()

        ordered = OrderedStream(
            self._limits, receive, serve, lambda seq, r, exc: fail(r, exc), self._streams
        )
        async with contextlib.aclosing(ordered.answers()) as answers:
            async for answer in answers:
                yield answer
        ended = STREAM_END.get(ordered.end) if ordered.end is not None else None
        if ended is not None:
            code, message = ended
            if ordered.end is End.IDLE:
                message = f"{message} ({self._limits.idle_timeout_s:g} s without a message)"
            await context.abort(code, message)


class InferenceServicer(_Servicer):
    """``inference.GRPCInferenceService``: the Open Inference Protocol with Triton's
    extensions."""

    # -- health and metadata -----------------------------------------------------------------

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: Context
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self._catalog.live())

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: Context
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._catalog.ready())

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Context
    ) -> pb.ModelReadyResponse:
        ready = self._catalog.model_ready(request.name, request.version or None)
        return pb.ModelReadyResponse(ready=ready)

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse:
        return convert.server_metadata(self._catalog.server_metadata())

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        doc = self._catalog.model_metadata(request.name, request.version or None)
        return convert.model_metadata(doc)

    async def ModelConfig(
        self, request: pb.ModelConfigRequest, context: Context
    ) -> pb.ModelConfigResponse:
        doc = self._catalog.model_config(request.name, request.version or None)
        return convert.model_config(doc)

    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: Context
    ) -> pb.ModelStatisticsResponse:
        local = self._catalog.model_stats(request.name or None, request.version or None)
        doc = await self._group.stats(local)
        return convert.model_statistics(doc)

    # -- inference ---------------------------------------------------------------------------

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Context
    ) -> pb.ModelInferResponse:
        decoded = convert.decode_infer_request(request, deadline_of(context))
        shared = self._service.shared_memory
        if decoded.shared_memory:
            shared.resolve(caller.current.get(), decoded)
        response = await self._service.infer(decoded)
        if decoded.shared_memory:
            shared.write_outputs(caller.current.get(), response)
        if response.cache is not None:
            add_trailing(context, (CACHE_METADATA, response.cache))
        return convert.encode_infer_response(response)

    async def ModelStreamInfer(
        self, requests: AsyncIterator[pb.ModelInferRequest | Malformed], context: Context
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Answers every request, in order (the core's ordered stream). A streaming model's
        partials each get a response with ``triton_final_response`` false; with
        ``triton_enable_empty_final_response`` set, an empty response with it true ends them.
        A request that fails gets a response with ``error_message`` and the stream goes on."""
        deadline = deadline_of(context)

        async def serve(
            seq: int, request: pb.ModelInferRequest | Malformed
        ) -> AsyncIterator[pb.ModelStreamInferResponse]:
            if isinstance(request, Malformed):
                yield pb.ModelStreamInferResponse(error_message=request.message)
                return
            try:
                await _charge(request.model_name or None)
                decoded = convert.decode_infer_request(request, deadline)
                empty_final = decoded.parameters.get(EMPTY_FINAL) is True
                if decoded.shared_memory:
                    self._service.shared_memory.resolve(caller.current.get(), decoded)
                async for response in self._service.responses(decoded, empty_final):
                    if decoded.shared_memory:
                        self._service.shared_memory.write_outputs(caller.current.get(), response)
                    encoded = convert.encode_infer_response(response)
                    encoded.parameters[FINAL].bool_param = response.final
                    yield pb.ModelStreamInferResponse(infer_response=encoded)
            except Exception as exc:
                yield _stream_error(request, exc)

        async for response in self._ordered(requests, context, serve, _stream_error):
            yield response

    # -- system shared memory (core/serving/shm.py) ---------------------------------------------------

    async def SystemSharedMemoryStatus(
        self, request: pb.SystemSharedMemoryStatusRequest, context: Context
    ) -> pb.SystemSharedMemoryStatusResponse:
        regions = self._service.shared_memory.status(caller.current.get(), request.name or None)
        return pb.SystemSharedMemoryStatusResponse(
            regions={
                r["name"]: pb.SystemSharedMemoryStatusResponse.RegionStatus(**r) for r in regions
            }
        )

    async def SystemSharedMemoryRegister(
        self, request: pb.SystemSharedMemoryRegisterRequest, context: Context
    ) -> pb.SystemSharedMemoryRegisterResponse:
        self._service.shared_memory.register(
            caller.current.get(), request.name, request.key, request.offset, request.byte_size
        )
        return pb.SystemSharedMemoryRegisterResponse()

    async def SystemSharedMemoryUnregister(
        self, request: pb.SystemSharedMemoryUnregisterRequest, context: Context
    ) -> pb.SystemSharedMemoryUnregisterResponse:
        self._service.shared_memory.unregister(caller.current.get(), request.name or None)
        return pb.SystemSharedMemoryUnregisterResponse()

    # -- model repository --------------------------------------------------------------------

    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: Context
    ) -> pb.RepositoryIndexResponse:
        return convert.repository_index(self._control.repository_index(True, request.ready))

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Context
    ) -> pb.RepositoryModelLoadResponse:
        parameters = {
            key: getattr(value, value.WhichOneof("parameter_choice") or "string_param")
            for key, value in request.parameters.items()
        }
        await self._control.load_model(request.model_name, parameters)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Context
    ) -> pb.RepositoryModelUnloadResponse:
        await self._control.unload_model(request.model_name)
        return pb.RepositoryModelUnloadResponse()


class SimpleServicer(_Servicer):
    """``inferd.simple.InferenceService``: the simple API (POST /predict) over gRPC."""

    async def Predict(
        self, request: simple_pb2.PredictRequest, context: Context
    ) -> simple_pb2.PredictResponse:
        return await self._predict(request, deadline_of(context), context)

    async def PredictStream(
        self, requests: AsyncIterator[simple_pb2.PredictRequest | Malformed], context: Context
    ) -> AsyncIterator[simple_pb2.PredictResponse]:
        """One response per request, in order (the core's ordered stream). A request that
        fails gets a response with ``error`` and ``code`` set and the stream goes on."""
        deadline = deadline_of(context)

        async def serve(
            seq: int, request: simple_pb2.PredictRequest | Malformed
        ) -> AsyncIterator[simple_pb2.PredictResponse]:
            try:
                if isinstance(request, Malformed):
                    raise InvalidArgument(request.message)
                await _charge(request.model_name or None)
                yield await self._predict(request, deadline)
            except Exception as exc:
                yield _predict_error(request, exc)

        async for response in self._ordered(requests, context, serve, _predict_error):
            yield response

    async def _predict(
        self,
        request: simple_pb2.PredictRequest,
        deadline: float | None,
        context: Context | None = None,
    ) -> simple_pb2.PredictResponse:
        result = await self._service.predict(
            request.model_name or None,
            request.model_version or None,
            list(request.inputs),
            batched=False,
            protocol="grpc",
            deadline=deadline,
            flat=True,
            routing_key=routingkey.current.get(),
        )
        try:
            predictions = np.asarray(result.predictions, dtype=np.float32).reshape(-1)
        except (TypeError, ValueError):
            raise InvalidArgument(
                "the model's first output is not numeric; call ModelInfer instead"
            ) from None
        if context is not None and result.cache is not None:
            add_trailing(context, (CACHE_METADATA, result.cache))
        return simple_pb2.PredictResponse(
            predictions=predictions.tolist(),
            model_version=result.model_version,
            latency_ms=result.latency_ms,
        )


async def _charge(model: str | None) -> None:
    """One message of a stream of requests counts against the caller's rate limit, on the
    model it names (the one stream policy, gateway/streams.py)."""
    policy = streams.current.get()
    if policy is not None:
        await policy.message(model)


def _stream_error(
    request: pb.ModelInferRequest | Malformed, exc: Exception
) -> pb.ModelStreamInferResponse:
    if isinstance(request, Malformed):
        return pb.ModelStreamInferResponse(error_message=status_of(exc)[1])
    return pb.ModelStreamInferResponse(
        error_message=status_of(exc)[1],
        infer_response=pb.ModelInferResponse(
            model_name=request.model_name, model_version=request.model_version, id=request.id
        ),
    )


def _predict_error(
    request: simple_pb2.PredictRequest | Malformed, exc: Exception
) -> simple_pb2.PredictResponse:
    code, message = status_of(exc)
    version = "" if isinstance(request, Malformed) else request.model_version
    return simple_pb2.PredictResponse(model_version=version, error=message, code=code.value[0])
