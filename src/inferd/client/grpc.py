"""inferd's gRPC client (KServe V2 ``GRPCInferenceService``), sync (:class:`GrpcClient`)
and async (:class:`AsyncGrpcClient`).

Tensors travel as raw contents, encoded and decoded by the server's own codecs
(``inferd.tensors``, ``inferd.grpc.convert``). RESOURCE_EXHAUSTED and UNAVAILABLE answers to
idempotent calls are tried again, waiting the ``retry-after`` trailing metadata when the
server sent it (``client/retry.py``). The request id comes back in the initial metadata,
``x-cache`` in the trailing metadata.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Final, Self

import grpc

from inferd.client.codec import InferResult, Inputs, tensors
from inferd.client.errors import retry_after, server_error
from inferd.client.retry import Retry, deadline_of, remaining
from inferd.errors import ErrorCode, InferdError, InvalidArgument
from inferd.grpc.convert import decode_parameters, encode_parameters
from inferd.grpc.protos import grpc_service_pb2 as pb
from inferd.grpc.protos import grpc_service_pb2_grpc as pb_grpc
from inferd.tensors import from_binary, to_binary

#: gRPC status -> neutral code (the reverse of ``inferd.grpc.errors.GRPC_STATUS``).
GRPC_CODE: Final[dict[grpc.StatusCode, ErrorCode]] = {
    grpc.StatusCode.INVALID_ARGUMENT: ErrorCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND: ErrorCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION: ErrorCode.CONFLICT,
    grpc.StatusCode.UNAVAILABLE: ErrorCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ErrorCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED: ErrorCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNAUTHENTICATED: ErrorCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED: ErrorCode.PERMISSION_DENIED,
}
RETRY_CODES: Final = frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE})
#: Parameters of Triton's decoupled streams.
FINAL: Final = "triton_final_response"
EMPTY_FINAL: Final = "triton_enable_empty_final_response"


def text_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> dict[str, str]:
    """A call's metadata by key, less the values of binary (``-bin``) keys."""
    return {key: value for key, value in metadata or () if isinstance(value, str)}


def grpc_error(exc: grpc.RpcError) -> InferdError:
    code = exc.code()
    # grpc's stubs type these pairs as objects with .key and .value; they are (key, value).
    trailing = text_metadata(exc.trailing_metadata())  # type: ignore[arg-type]
    initial = text_metadata(exc.initial_metadata()) if hasattr(exc, "initial_metadata") else {}
    return server_error(
        GRPC_CODE.get(code, ErrorCode.INTERNAL),
        f"{code.name}: {exc.details()}",
        request_id=trailing.get("x-request-id", initial.get("x-request-id")),
        retry_after_s=retry_after(trailing.get("retry-after")),
    )


def infer_request(
    model: str,
    inputs: Inputs,
    version: str | None = None,
    outputs: list[str] | None = None,
    datatypes: Mapping[str, str] | None = None,
    parameters: Mapping[str, Any] | None = None,
    id: str | None = None,
) -> Any:
    """A ModelInferRequest with every input in raw contents."""
    given = tensors(inputs, datatypes)
    message = pb.ModelInferRequest(
        model_name=model,
        model_version=version or "",
        id=id or "",
        inputs=[
            pb.ModelInferRequest.InferInputTensor(
                name=t.name, datatype=t.datatype, shape=t.array.shape
            )
            for t in given
        ],
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name=n) for n in outputs or ()],
        raw_input_contents=[to_binary(t.datatype, t.array) for t in given],
    )
    if parameters:
        encode_parameters(parameters, message.parameters)
    return message


def infer_result(message: Any, request_id: str | None, cache: str | None) -> InferResult:
    outputs = {
        tensor.name: from_binary(tensor.name, tensor.datatype, tuple(tensor.shape), raw)
        for tensor, raw in zip(message.outputs, message.raw_output_contents, strict=True)
    }
    parameters = decode_parameters(message.parameters)
    final = parameters.pop(FINAL, True) is not False
    return InferResult(
        message.model_name,
        message.model_version,
        outputs,
        message.id or None,
        request_id,
        cache,
        parameters,
        final,
    )


class _Base:
    def __init__(
        self,
        target: str = "127.0.0.1:8081",
        *,
        api_key: str | None = None,
        timeout: float | None = None,
        retry: Retry | None = None,
        root_certificates: bytes | None = None,
        tls: bool = False,
        routing_header: str = "x-routing-key",
    ) -> None:
        """``target`` ``host:port`` of the gRPC port; ``tls`` (or ``root_certificates``,
        the PEM of a CA to trust) for a TLS channel; the rest as :class:`~inferd.client.Client`."""
        self.target = target
        self.timeout = timeout
        self.retry = retry or Retry()
        self._api_key = api_key
        self._routing_header = routing_header.lower()
        self._credentials = (
            grpc.ssl_channel_credentials(root_certificates)
            if tls or root_certificates is not None
            else None
        )

    def _metadata(self, request_id: str | None, routing_key: str | None) -> list[tuple[str, str]]:
        metadata = []
        if self._api_key is not None:
            metadata.append(("authorization", f"Bearer {self._api_key}"))
        if request_id is not None:
            metadata.append(("x-request-id", request_id))
        if routing_key is not None:
            metadata.append((self._routing_header, routing_key))
        return metadata

    def _request(
        self, model: str, inputs: Inputs, kw: dict[str, Any]
    ) -> tuple[Any, dict[str, Any]]:
        """The message and the call's metadata and deadline from :meth:`infer`'s keywords."""
        known = {"version", "label", "outputs", "datatypes", "parameters", "request_id"}
        known |= {"routing_key", "timeout_s", "binary"}
        unknown = kw.keys() - known
        if unknown:
            raise TypeError(f"unexpected keyword argument(s) {sorted(unknown)}")
        if kw.get("binary") is False:
            raise InvalidArgument("gRPC always sends raw contents; binary=False is for HTTP")
        if kw.get("version") is not None and kw.get("label") is not None:
            raise InvalidArgument("give a version or a label, not both")
        message = infer_request(
            model,
            inputs,
            kw.get("version") or kw.get("label"),
            kw.get("outputs"),
            kw.get("datatypes"),
            kw.get("parameters"),
        )
        timeout_s = kw.get("timeout_s") or self.timeout
        call = {
            "metadata": self._metadata(kw.get("request_id"), kw.get("routing_key")),
            "deadline": deadline_of(timeout_s),
        }
        return message, call

    def _wait(
        self, exc: grpc.RpcError, error: InferdError, tried: int, deadline: float | None
    ) -> float | None:
        if exc.code() not in RETRY_CODES:
            return None
        return self.retry.wait(tried, error.retry_after_s, deadline)


class GrpcClient(_Base):
    """A blocking gRPC client; use it as a context manager, or call :meth:`close`."""

    def __init__(self, target: str = "127.0.0.1:8081", **options: Any) -> None:
        super().__init__(target, **options)
        self._channel = (
            grpc.secure_channel(target, self._credentials)
            if self._credentials is not None
            else grpc.insecure_channel(target)
        )
        self._stub = pb_grpc.GRPCInferenceServiceStub(self._channel)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _unary(self, method: Any, message: Any, metadata: Any, deadline: float | None) -> Any:
        tried = 0
        while True:
            try:
                return method.with_call(message, metadata=metadata, timeout=remaining(deadline))
            except grpc.RpcError as exc:
                error = grpc_error(exc)
                tried += 1
                wait = self._wait(exc, error, tried, deadline)
                if wait is None:
                    raise error from None
                time.sleep(wait)

    def live(self) -> bool:
        answer, _ = self._unary(
            self._stub.ServerLive,
            pb.ServerLiveRequest(),
            self._metadata(None, None),
            deadline_of(self.timeout),
        )
        return bool(answer.live)

    def ready(self) -> bool:
        answer, _ = self._unary(
            self._stub.ServerReady,
            pb.ServerReadyRequest(),
            self._metadata(None, None),
            deadline_of(self.timeout),
        )
        return bool(answer.ready)

    def infer(self, model: str, inputs: Inputs, **options: Any) -> InferResult:
        """See :meth:`inferd.client.Client.infer` (``binary`` does not apply: raw contents)."""
        message, call = self._request(model, inputs, options)
        answer, rpc = self._unary(
            self._stub.ModelInfer, message, call["metadata"], call["deadline"]
        )
        trailing = text_metadata(rpc.trailing_metadata())
        return infer_result(answer, trailing.get("x-request-id"), trailing.get("x-cache"))

    def stream(self, model: str, inputs: Inputs, **options: Any) -> Iterator[InferResult]:
        """One request on ``ModelStreamInfer``; its answers as they come (a streaming
        model's partials, ``final`` False, then the end)."""
        message, call = self._request(model, inputs, options)
        message.parameters[EMPTY_FINAL].bool_param = True
        responses = self._stub.ModelStreamInfer(
            iter([message]), metadata=call["metadata"], timeout=remaining(call["deadline"])
        )
        try:
            request_id = text_metadata(responses.initial_metadata()).get("x-request-id")
            for response in responses:
                result = _stream_result(response, request_id)
                if result.outputs:
                    yield result
                if result.final:
                    return
        except grpc.RpcError as exc:
            raise grpc_error(exc) from None
        finally:
            responses.cancel()


def _stream_result(response: Any, request_id: str | None) -> InferResult:
    if response.error_message:
        raise server_error(ErrorCode.INTERNAL, response.error_message, request_id=request_id)
    return infer_result(response.infer_response, request_id, None)


class AsyncGrpcClient(_Base):
    """The same calls as :class:`GrpcClient`, awaited (grpc.aio)."""

    def __init__(self, target: str = "127.0.0.1:8081", **options: Any) -> None:
        super().__init__(target, **options)
        self._channel = (
            grpc.aio.secure_channel(target, self._credentials)
            if self._credentials is not None
            else grpc.aio.insecure_channel(target)
        )
        self._stub = pb_grpc.GRPCInferenceServiceStub(self._channel)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._channel.close()

    async def infer(self, model: str, inputs: Inputs, **options: Any) -> InferResult:
        """See :meth:`GrpcClient.infer`."""
        message, call = self._request(model, inputs, options)
        tried = 0
        while True:
            rpc = self._stub.ModelInfer(
                message, metadata=call["metadata"], timeout=remaining(call["deadline"])
            )
            try:
                answer = await rpc
            except grpc.aio.AioRpcError as exc:
                error = grpc_error(exc)
                tried += 1
                wait = self._wait(exc, error, tried, call["deadline"])
                if wait is None:
                    raise error from None
                await asyncio.sleep(wait)
                continue
            trailing = text_metadata(await rpc.trailing_metadata())
            return infer_result(answer, trailing.get("x-request-id"), trailing.get("x-cache"))

    async def stream(
        self, model: str, inputs: Inputs, **options: Any
    ) -> AsyncIterator[InferResult]:
        """See :meth:`GrpcClient.stream`."""
        message, call = self._request(model, inputs, options)
        message.parameters[EMPTY_FINAL].bool_param = True
        rpc = self._stub.ModelStreamInfer(
            metadata=call["metadata"], timeout=remaining(call["deadline"])
        )
        try:
            await rpc.write(message)
            await rpc.done_writing()
            request_id = text_metadata(await rpc.initial_metadata()).get("x-request-id")
            async for response in rpc:
                result = _stream_result(response, request_id)
                if result.outputs:
                    yield result
                if result.final:
                    return
        except grpc.aio.AioRpcError as exc:
            raise grpc_error(exc) from None
        finally:
            rpc.cancel()
