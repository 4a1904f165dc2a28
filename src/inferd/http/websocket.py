"""WebSocket streams: ``/predict/stream`` and ``/v2/models/{model}[/versions/{v}]/stream``.

Contract:
- Each frame (text or binary) holds one JSON request, the simple shape of ``/predict`` or a
  V2 infer request. Each request read gets exactly one answer, a text frame carrying its
  ``id`` (when it gave one) and ``seq``, the stream's count of requests (1, 2, ...).
- Answers go out in request order. Up to ``stream.max_in_flight`` requests of one stream
  are served at once, through the same service and batcher as unary requests.
- A bad request is answered ``{"error", "code", "id"?, "seq", "request_id"}``, ``code``
  being the HTTP status REST would give, and the stream goes on.
- Each message counts against the caller's rate limit (``safeguards.rate_limit``) as a
  request would; one past it is answered ``{"error", "code": 429, "retry_after_s"}``.
- The server closes a stream only after sending the answers to every request it read:
  1000 when idle, 1008 past the message rate, 1009 for an oversized frame, 1001 on shutdown.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Any, Final

import orjson
from starlette.applications import Starlette
from starlette.websockets import WebSocket, WebSocketDisconnect

from inferd.core.service import InferenceService
from inferd.core.serving.streams import ClientGone, End, OrderedStream, StreamLimits, StreamRegistry
from inferd.errors import InferdError, InvalidArgument, clip
from inferd.gateway import requestid, routingkey
from inferd.gateway.admission import Gateway
from inferd.gateway.streams import StreamPolicy
from inferd.http.codec import decode_document, response_document
from inferd.http.errors import status_of
from inferd.http.front import SCOPE_KEY
from inferd.http.jsonwork import JsonParser
from inferd.http.simple import PREDICT_FIELDS, decode_predict

log = logging.getLogger("inferd.http")

PROTOCOL: Final = "websocket"
SIMPLE_FIELDS: Final = PREDICT_FIELDS | {"id", "model"}
#: Fields a V2 message may carry beside the V2 request's own (the model it is for).
V2_TARGET_FIELDS: Final = ("model_name", "model_version")
NO_BINARY: Final = memoryview(b"")


@dataclasses.dataclass(frozen=True, slots=True)
class Close:
    code: int
    reason: str


SHUTDOWN: Final = Close(1001, "server shutting down")
#: How the server closes a stream, by why it stopped reading (None: nothing to send).
CLOSE: Final[dict[End, Close | None]] = {
    End.CLIENT_DONE: Close(1000, "done"),
    End.CLIENT_GONE: None,
    End.IDLE: Close(1000, "idle timeout"),
    End.RATE_LIMITED: Close(1008, "message rate limit exceeded"),
    End.SHUTDOWN: SHUTDOWN,
}


async def close_streams(app: object, timeout: float) -> None:
    """Close the streams of an app built by ``create_app`` (see
    :meth:`StreamRegistry.close_all`): what they owe is sent, then they close with 1001.

    A server calls this on shutdown before it drops its connections: uvicorn would close
    them with 1012 and leave their pending answers unsent.
    """
    if isinstance(app, Starlette) and isinstance(
        getattr(app.state, "streams", None), StreamRegistry
    ):
        await app.state.streams.close_all(timeout)


async def stream(websocket: WebSocket) -> None:
    """The WebSocket endpoint of every WebSocket path of the route table (http/routes.py)."""
    await _Stream(websocket, websocket.app.state.service, websocket.app.state.streams).run()


class _Stream:
    """One connection: decoding and encoding around the core's ordered stream."""

    def __init__(
        self, websocket: WebSocket, service: InferenceService, registry: StreamRegistry
    ) -> None:
        self.ws = websocket
        self.service = service
        self.model: str | None = websocket.path_params.get("model")
        self.version: str | None = websocket.path_params.get("version")
        self.json: JsonParser = websocket.app.state.json
        self.limits = StreamLimits.of(service.settings)
        self.registry = registry
        gateway: Gateway = websocket.app.state.gateway
        self.policy = StreamPolicy(gateway, websocket.scope[SCOPE_KEY].principal)

    async def run(self) -> None:
        await self.ws.accept()
        ordered = OrderedStream(self.limits, self._receive, self._answers, _failed, self.registry)
        async with contextlib.aclosing(ordered.answers()) as answers:
            async for frame in answers:
                try:
                    await self.ws.send_text(frame.decode())
                except (WebSocketDisconnect, OSError):
                    return
        assert ordered.end is not None
        close = (
            Close(1009, f"message exceeds the {self.limits.max_message_bytes}-byte limit")
            if ordered.end is End.TOO_LARGE
            else CLOSE[ordered.end]
        )
        if close is not None:
            with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
                await self.ws.close(close.code, close.reason)

    async def _receive(self) -> tuple[str | bytes, int] | None:
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise ClientGone
        frame: str | bytes = (
            message["text"] if message.get("text") is not None else message["bytes"]
        )
        return frame, _size(frame)

    # -- one request: decode, call the service, encode ---------------------------------------

    async def _answers(self, seq: int, frame: str | bytes) -> AsyncIterator[bytes]:
        head: dict[str, Any] = {}
        try:
            doc = await self.json.parse(frame)
            if not isinstance(doc, dict):
                raise InvalidArgument(
                    'a message must be a JSON object: {"inputs": [numbers]}, {"batch": [rows]} '
                    "or a V2 infer request"
                )
            if "id" in doc:
                if not isinstance(doc["id"], str):
                    raise InvalidArgument("'id' must be a string")
                head["id"] = doc["id"]
            head["seq"] = seq
            inputs = doc.get("inputs")
            if isinstance(inputs, list) and inputs and isinstance(inputs[0], dict):
                async for body in self._infer(doc):
                    yield orjson.dumps({**head, **body}, option=orjson.OPT_SERIALIZE_NUMPY)
            else:
                body = await self._predict(doc)
                yield orjson.dumps({**head, **body}, option=orjson.OPT_SERIALIZE_NUMPY)
        except Exception as exc:
            yield _error(head, seq, exc)

    async def _predict(self, doc: dict[str, Any]) -> dict[str, Any]:
        """A simple message, served as ``POST /predict`` would serve it."""
        data, batched, version = decode_predict(doc, SIMPLE_FIELDS)
        model, version = self._target(doc.get("model"), "model", version)
        await self._admit(model)
        request_id = doc.get("id")
        result = await self.service.predict(
            model,
            version,
            data,
            batched=batched,
            protocol=PROTOCOL,
            request_id=request_id if isinstance(request_id, str) else None,
            routing_key=routingkey.current.get(),
        )
        return {
            "predictions": result.predictions,
            "model_version": result.model_version,
            "latency_ms": result.latency_ms,
        }

    async def _infer(self, doc: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """A V2 message, served as ``POST /v2/models/{model}/infer`` would serve it; a
        streaming model's partials each get an answer with ``"final": false``, then an
        answer without outputs with ``"final": true``."""
        version = doc.get("model_version")
        if version is not None and not isinstance(version, str):
            raise InvalidArgument("'model_version' must be a string")
        model, version = self._target(doc.get("model_name"), "model_name", version)
        await self._admit(model)
        fields = {k: v for k, v in doc.items() if k not in V2_TARGET_FIELDS}
        request = decode_document(
            fields, NO_BINARY, model or self.service.default_model(), version, PROTOCOL
        )
        wants_binary = request.parameters.get("binary_data_output") is True or any(
            o.parameters.get("binary_data") is True for o in request.outputs or ()
        )
        if wants_binary:
            raise InvalidArgument(
                "binary tensor data is not available on a stream; drop 'binary_data' and read "
                "the outputs' JSON 'data'"
            )
        if request.shared_memory:
            raise InvalidArgument(
                "system shared memory is not available on a WebSocket stream; use /infer or "
                "gRPC ModelInfer / ModelStreamInfer"
            )
        async for response in self.service.responses(request, empty_final=True):
            body, _ = response_document(response, binary_default=False)
            if response.final and not response.outputs:
                del body["outputs"]
                body["final"] = True
            elif not response.final:
                body["final"] = False
            yield body

    async def _admit(self, model: str | None) -> None:
        """Each message counts against the caller's rate limit (gateway/streams.py)."""
        await self.policy.message(model)

    def _target(self, model: Any, field: str, version: str | None) -> tuple[str | None, str | None]:
        """The model and version a message is for; the path's, where the path names them."""
        if model is not None and not isinstance(model, str):
            raise InvalidArgument(f"'{field}' must be a string")
        if self.model is not None:
            if model not in (None, self.model):
                raise InvalidArgument(
                    f"this stream serves model '{self.model}'; the message names '{clip(model)}'"
                )
            model = self.model
        if self.version is not None:
            if version not in (None, self.version):
                raise InvalidArgument(
                    f"this stream serves version '{self.version}'; the message names '{clip(version)}'"
                )
            version = self.version
        return model, version


def _size(frame: str | bytes) -> int:
    """The frame's size in bytes (text counts as UTF-8)."""
    if isinstance(frame, bytes) or frame.isascii():
        return len(frame)
    return len(frame.encode())


def _error(head: dict[str, Any], seq: int, exc: Exception) -> bytes:
    """A message's error answer: the transport's one table and renderer (http/errors.py),
    with the stream's request id."""
    status, message = status_of(exc)
    answer: dict[str, Any] = {"error": message, "code": status}
    if "id" in head:
        answer["id"] = head["id"]
    answer["seq"] = seq
    retry_after_s = exc.retry_after_s if isinstance(exc, InferdError) else None
    if retry_after_s is not None:
        answer["retry_after_s"] = round(retry_after_s, 3)
    answer["request_id"] = requestid.current.get()
    return orjson.dumps(answer)


def _failed(seq: int, frame: str | bytes, exc: Exception) -> bytes:
    """The answer for a message whose serving failed outside ``_answers``' own handling."""
    return _error({}, seq, exc)
