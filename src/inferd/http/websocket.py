"""WebSocket streams: ``/predict/stream`` and ``/v2/models/{model}[/versions/{v}]/stream``.

Contract:
- Each frame (text or binary) holds one JSON request, the simple shape of ``/predict`` or a
  V2 infer request. Each request read gets exactly one answer, a text frame carrying its
  ``id`` (when it gave one) and ``seq``, the stream's count of requests (1, 2, ...).
- Answers go out in request order. Up to ``stream.max_in_flight`` requests of one stream
  are served at once, through the same service and batcher as unary requests.
- A bad request is answered ``{"error", "code", "id"?, "seq"}``, ``code`` being the HTTP
  status REST would give, and the stream goes on.
- The server closes a stream only after sending the answers to every request it read:
  1000 when idle, 1008 past the message rate, 1009 for an oversized frame, 1001 on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from typing import Any, Final

import orjson
from starlette.applications import Starlette
from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketDisconnect

from inferd.core.service import InferenceService
from inferd.errors import InferdError, InvalidArgument, ResourceExhausted, clip
from inferd.gateway.ratelimit import RateLimiter
from inferd.http.codec import decode_document, response_document
from inferd.http.errors import HTTP_STATUS
from inferd.http.jsonwork import JsonParser
from inferd.http.simple import PREDICT_FIELDS, decode_predict
from inferd.settings import RateLimitSettings

log = logging.getLogger("inferd.http")

PATHS: Final = (
    "/predict/stream",
    "/v2/models/{model}/stream",
    "/v2/models/{model}/versions/{version}/stream",
)
PROTOCOL: Final = "websocket"
SIMPLE_FIELDS: Final = PREDICT_FIELDS | {"id", "model"}
#: Fields a V2 message may carry beside the V2 request's own (the model it is for).
V2_TARGET_FIELDS: Final = ("model_name", "model_version")
NO_BINARY: Final = memoryview(b"")


@dataclasses.dataclass(frozen=True, slots=True)
class Close:
    code: int
    reason: str


IDLE: Final = Close(1000, "idle timeout")
SHUTDOWN: Final = Close(1001, "server shutting down")
RATE_LIMITED: Final = Close(1008, "message rate limit exceeded")


class Streams:
    """The open streams of one app, closed together when the server shuts down."""

    def __init__(self) -> None:
        self.closing = False
        self._open: set[_Stream] = set()

    async def close_all(self, timeout: float) -> None:
        """Stop reading every stream, send what they owe, close them with 1001.

        Streams opened from now on are closed with 1001 at once. Waits at most ``timeout``
        seconds for the answers; streams still busy then are left to the server.
        """
        self.closing = True
        streams = list(self._open)
        for stream in streams:
            stream.interrupt(SHUTDOWN)
        if streams:
            await asyncio.wait([s.finished for s in streams], timeout=timeout)

    def add(self, stream: _Stream) -> None:
        self._open.add(stream)

    def discard(self, stream: _Stream) -> None:
        self._open.discard(stream)


async def close_streams(app: object, timeout: float) -> None:
    """Close the streams of an app built by ``create_app`` (see :meth:`Streams.close_all`).

    A server calls this on shutdown before it drops its connections: uvicorn would close
    them with 1012 and leave their pending answers unsent.
    """
    if isinstance(app, Starlette) and isinstance(getattr(app.state, "streams", None), Streams):
        await app.state.streams.close_all(timeout)


async def stream(websocket: WebSocket) -> None:
    """The WebSocket endpoint of every path in :data:`PATHS`."""
    await _Stream(websocket, websocket.app.state.service, websocket.app.state.streams).run()


class _Stream:
    """One connection: a reader dispatching requests, a writer sending answers in order."""

    def __init__(self, websocket: WebSocket, service: InferenceService, streams: Streams) -> None:
        limits = service.settings.stream
        self.ws = websocket
        self.service = service
        self.streams = streams
        self.model: str | None = websocket.path_params.get("model")
        self.version: str | None = websocket.path_params.get("version")
        self.max_bytes = service.settings.safeguards.max_request_bytes
        self.json: JsonParser = websocket.app.state.json
        self.idle_timeout = limits.idle_timeout_s
        per_minute = max(1, round(limits.max_messages_per_second * 60))
        self.limiter = RateLimiter(RateLimitSettings(requests_per_minute=per_minute))
        self.slots = asyncio.Semaphore(limits.max_in_flight)
        self.answers: asyncio.Queue[asyncio.Task[bytes] | None] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        self.finished: asyncio.Future[None] = self.loop.create_future()
        self.seq = 0
        self.pending = 0
        self.last_active = self.loop.time()
        self.client_gone = False
        self.reader: asyncio.Task[Close | None] | None = None
        self.interrupted = False
        self.interrupt_close: Close | None = None

    def interrupt(self, close: Close | None) -> None:
        """Stop reading; the stream sends what it owes, then closes with ``close`` (None:
        the client is gone and nothing more is sent)."""
        if not self.interrupted:
            self.interrupted = True
            self.interrupt_close = close
            if self.reader is not None:
                self.reader.cancel()

    async def run(self) -> None:
        await self.ws.accept()
        if self.streams.closing:
            await self.ws.close(SHUTDOWN.code, SHUTDOWN.reason)
            return
        self.streams.add(self)
        self.reader = asyncio.create_task(self._read())
        writer = asyncio.create_task(self._write())
        try:
            close = await self._reading()
            if close is None:
                return
            self.answers.put_nowait(None)
            await writer
            if not self.client_gone:
                with contextlib.suppress(WebSocketDisconnect, OSError):
                    await self.ws.close(close.code, close.reason)
        finally:
            self.reader.cancel()
            writer.cancel()
            while not self.answers.empty():
                task = self.answers.get_nowait()
                if task is not None:
                    task.cancel()
            self.streams.discard(self)
            self.finished.set_result(None)

    async def _reading(self) -> Close | None:
        """How reading ended: the close to send, or None when the client is gone."""
        assert self.reader is not None
        try:
            return await self.reader
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not self.interrupted or (current is not None and current.cancelling()):
                raise
            return None if self.client_gone else self.interrupt_close

    # -- reading ----------------------------------------------------------------------------

    async def _read(self) -> Close | None:
        """Dispatch requests until the stream must close; None when the client left.

        A slot is taken before each read, so a request once read is always dispatched.
        """
        while True:
            await self.slots.acquire()
            message = await self._receive()
            if message is None:
                return IDLE
            if message["type"] == "websocket.disconnect":
                self.client_gone = True
                return None
            frame: str | bytes = (
                message["text"] if message.get("text") is not None else message["bytes"]
            )
            if _size(frame) > self.max_bytes:
                return Close(1009, f"message exceeds the {self.max_bytes}-byte limit")
            try:
                self.limiter.check("stream")
            except ResourceExhausted:
                return RATE_LIMITED
            self.seq += 1
            self.pending += 1
            self.last_active = self.loop.time()
            self.answers.put_nowait(asyncio.create_task(self._answer(self.seq, frame)))

    async def _receive(self) -> Message | None:
        """The next ASGI message, or None once nothing came and nothing was pending for the
        idle timeout."""
        while True:
            start = self.loop.time() if self.pending else self.last_active
            try:
                async with asyncio.timeout_at(start + self.idle_timeout):
                    return await self.ws.receive()
            except TimeoutError:
                if not self.pending and self.loop.time() >= self.last_active + self.idle_timeout:
                    return None

    # -- writing ----------------------------------------------------------------------------

    async def _write(self) -> None:
        """Send the answers in request order; on a failed send, stop the stream."""
        while (task := await self.answers.get()) is not None:
            frame = await task
            try:
                await self.ws.send_text(frame.decode())
            except (WebSocketDisconnect, OSError):
                self.client_gone = True
                self.interrupt(None)
                return
            self.pending -= 1
            self.last_active = self.loop.time()
            self.slots.release()

    # -- one request: decode, call the service, encode ---------------------------------------

    async def _answer(self, seq: int, frame: str | bytes) -> bytes:
        head: dict[str, Any] = {}
        try:
            doc = await self.json.parse(frame)
            if isinstance(doc, dict) and "id" in doc:
                if not isinstance(doc["id"], str):
                    raise InvalidArgument("'id' must be a string")
                head["id"] = doc["id"]
            head["seq"] = seq
            head.update(await self._serve(doc))
            return orjson.dumps(head, option=orjson.OPT_SERIALIZE_NUMPY)
        except InferdError as exc:
            return _error(head, seq, exc.message, HTTP_STATUS[exc.code], exc.retry_after_s)
        except Exception:
            log.exception("unhandled error serving a stream message")
            return _error(head, seq, "internal server error", 500, None)

    async def _serve(self, doc: Any) -> dict[str, Any]:
        if not isinstance(doc, dict):
            raise InvalidArgument(
                'a message must be a JSON object: {"inputs": [numbers]}, {"batch": [rows]} '
                "or a V2 infer request"
            )
        inputs = doc.get("inputs")
        if isinstance(inputs, list) and inputs and isinstance(inputs[0], dict):
            return await self._infer(doc)
        return await self._predict(doc)

    async def _predict(self, doc: dict[str, Any]) -> dict[str, Any]:
        """A simple message, served as ``POST /predict`` would serve it."""
        data, batched, version = decode_predict(doc, SIMPLE_FIELDS)
        model, version = self._target(doc.get("model"), "model", version)
        request_id = doc.get("id")
        result = await self.service.predict(
            model,
            version,
            data,
            batched=batched,
            protocol=PROTOCOL,
            request_id=request_id if isinstance(request_id, str) else None,
        )
        return {
            "predictions": result.predictions,
            "model_version": result.model_version,
            "latency_ms": result.latency_ms,
        }

    async def _infer(self, doc: dict[str, Any]) -> dict[str, Any]:
        """A V2 message, served as ``POST /v2/models/{model}/infer`` would serve it."""
        version = doc.get("model_version")
        if version is not None and not isinstance(version, str):
            raise InvalidArgument("'model_version' must be a string")
        model, version = self._target(doc.get("model_name"), "model_name", version)
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
        body, _ = response_document(await self.service.infer(request), binary_default=False)
        return body

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


def _error(
    head: dict[str, Any], seq: int, message: str, status: int, retry_after_s: float | None
) -> bytes:
    answer: dict[str, Any] = {"error": message, "code": status}
    if "id" in head:
        answer["id"] = head["id"]
    answer["seq"] = seq
    if retry_after_s is not None:
        answer["retry_after_s"] = round(retry_after_s, 3)
    return orjson.dumps(answer)
