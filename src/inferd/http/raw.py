"""The fast inference routes, served as raw ASGI instead of through FastAPI.

The routes of the table (``http/routes.py``) that have a handler —
``/v2/models/{model}[/versions/{version}]/infer``, ``generate``, ``generate_stream``,
``/predict`` and ``/models/{model}/predict`` — skip Starlette's request object and
FastAPI's router: on a small model that machinery cost more than decoding, batching and the
model together (``benchmarks/RESULTS.md``). They still sit behind the one front
(``http/front.py``): its middleware, the gateway, request ids and the access log cover them,
and their errors are rendered by the one function (``http/errors.py``). The handlers keep
the adapter's three steps (decode, call the service, encode).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Final

from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from inferd.core.service import InferenceService
from inferd.errors import PayloadTooLarge
from inferd.gateway.admission import Principal
from inferd.gateway.limits import check_declared_length, read_limited
from inferd.http.errors import error_parts
from inferd.http.jsonwork import JsonParser

log = logging.getLogger("inferd.http")

JSON: Final = b"application/json"


@dataclasses.dataclass(slots=True)
class Call:
    """What a raw handler reads of a request: lower-case headers, path parameters, body,
    and the caller (the gateway's principal)."""

    headers: dict[str, str]
    model: str | None
    version: str | None
    body: bytes
    json: JsonParser
    principal: Principal | None = None
    #: ``time.monotonic()`` when the front first ran the request.
    arrived: float | None = None
    #: No other request read by the connection layer is on its way to a queue (the direct
    #: path's count, ``http/front.py``); the ASGI path never says so.
    alone: bool = False

    def caller(self) -> tuple[str | None, str | None]:
        """Whom the request's system shared memory regions belong to: key name, address."""
        if self.principal is None:
            return None, None
        return self.principal.name, self.principal.address


@dataclasses.dataclass(slots=True)
class Answer:
    body: bytes
    content_type: bytes = JSON
    headers: Sequence[tuple[bytes, bytes]] = ()
    status: int = 200
    #: A streamed body (chunks sent as they come) instead of ``body``; closed, and what
    #: produces it cancelled, when the client disconnects.
    stream: AsyncIterator[bytes] | None = None


#: ``X-Cache`` for answers of models with the prediction cache on.
CACHE_HEADERS: Final[dict[str | None, tuple[tuple[bytes, bytes], ...]]] = {
    None: (),
    "hit": ((b"x-cache", b"hit"),),
    "miss": ((b"x-cache", b"miss"),),
}


def answer_headers(version: str, cache: str | None) -> tuple[tuple[bytes, bytes], ...]:
    """``X-Model-Version`` (the version that answered) and ``X-Cache`` (when cached)."""
    return ((b"x-model-version", version.encode()), *CACHE_HEADERS[cache])


Handler = Callable[[InferenceService, Call], Awaitable[Answer]]


class _Disconnected(Exception):
    """The client went away before its body arrived: nobody to answer."""


async def serve(
    handler: Handler,
    call: Call,
    service: InferenceService,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """Serve a fast route's request: POST only (others get 405), the body read within the
    size limit, the handler's answer (or its error, rendered by the one function) sent."""
    try:
        if scope["method"] != "POST":
            raise HTTPException(405, "Method Not Allowed", {"Allow": "POST"})
        limit = _read_head(call, scope, service)
        call.body = await _read_body(receive, limit)
        answer = await handler(service, call)
    except _Disconnected:
        return
    except Exception as exc:
        answer = error_answer(exc)
    if answer.stream is not None:
        await _send_stream(answer, answer.stream, receive, send)
    else:
        await _send(answer, send)


def take_whole(call: Call, scope: Scope, service: InferenceService, body: bytes) -> None:
    """A fast route's POST whose whole body has arrived (``http/direct.py``): its headers
    and body into ``call``, with :func:`serve`'s checks (raises what it answers)."""
    limit = _read_head(call, scope, service)
    if len(body) > limit:
        raise PayloadTooLarge(f"request body exceeds the {limit}-byte limit")
    call.body = body


def _read_head(call: Call, scope: Scope, service: InferenceService) -> int:
    """The request's headers into ``call``; its declared length checked. Returns the
    body's limit."""
    call.headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    limit = service.settings.safeguards.max_request_bytes
    check_declared_length(call.headers.get("content-length"), limit)
    return limit


def error_answer(exc: BaseException) -> Answer:
    """An exception's answer, rendered by the one function (``http/errors.py``)."""
    status, body, headers = error_parts(exc)
    return Answer(body, JSON, headers, status)


async def _send_stream(
    answer: Answer, chunks: AsyncIterator[bytes], receive: Receive, send: Send
) -> None:
    """Send chunks as they come until they end or the client disconnects; then close the
    iterator (on a disconnect it is cancelled where it waits)."""

    async def pump() -> None:
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [(b"content-type", answer.content_type), *answer.headers],
            }
        )
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    sending = asyncio.ensure_future(pump())
    watching = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({sending, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sending, watching):
            task.cancel()
        results = await asyncio.gather(sending, watching, return_exceptions=True)
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
    if isinstance(results[0], Exception) and not isinstance(results[0], OSError):
        log.error("unhandled error in a streamed answer", exc_info=results[0])


async def _send(answer: Answer, send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": answer.status,
            "headers": [
                (b"content-type", answer.content_type),
                (b"content-length", str(len(answer.body)).encode()),
                *answer.headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": answer.body})


async def _read_body(receive: Receive, limit: int) -> bytes:
    first = await receive()
    if first["type"] == "http.disconnect":
        raise _Disconnected
    body: bytes = first.get("body", b"")
    if not first.get("more_body", False):  # the usual case: the whole body in one message
        if len(body) > limit:
            raise PayloadTooLarge(f"request body exceeds the {limit}-byte limit")
        return body
    return await read_limited(_chunks(receive, body), limit)


async def _chunks(receive: Receive, first: bytes) -> AsyncIterator[bytes]:
    yield first
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return
