"""The inference routes as raw ASGI, ahead of FastAPI.

A request to ``/v2/models/{model}[/versions/{version}]/infer``, ``/predict`` or
``/models/{model}/predict`` skips Starlette's request object, the middleware stack and
the router: on a small model that machinery cost more than decoding, batching and the
model together (``benchmarks/RESULTS.md``). They still sit behind the one front
(``http/front.py``): its middleware, the gateway, request ids and the access log cover them,
and their errors are rendered by the one function (``http/errors.py``). The handlers keep
the adapter's three steps (decode, call the service, encode) and the OpenAPI document
still describes them (``http/openapi.py``). Every other path goes to FastAPI.
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
from inferd.gateway.limits import check_declared_length, read_limited
from inferd.http.errors import error_parts
from inferd.http.jsonwork import JsonParser

log = logging.getLogger("inferd.http")

JSON: Final = b"application/json"


@dataclasses.dataclass(slots=True)
class Call:
    """What a raw handler reads of a request: lower-case headers, path parameters, body."""

    headers: dict[str, str]
    model: str | None
    version: str | None
    body: bytes
    json: JsonParser


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


@dataclasses.dataclass(frozen=True, slots=True)
class _Pattern:
    segments: tuple[str, ...]  # "{model}" and "{version}" capture one non-empty segment
    handler: Handler

    def match(self, parts: list[str]) -> dict[str, str] | None:
        params: dict[str, str] = {}
        for want, got in zip(self.segments, parts, strict=True):
            if want.startswith("{"):
                if not got:
                    return None
                params[want[1:-1]] = got
            elif want != got:
                return None
        return params


#: Paths remembered with their route; a client that sends many distinct paths only fills
#: the memory up to this many, then it starts again.
_MATCH_CACHE_SIZE: Final = 4096


class RawRoutes:
    """A small table of ``(path pattern, handler)``; POST only (others get 405)."""

    def __init__(self, routes: Sequence[tuple[str, Handler]], json: JsonParser) -> None:
        self._json = json
        self._by_length: dict[int, list[_Pattern]] = {}
        for path, handler in routes:
            segments = tuple(path.split("/"))
            self._by_length.setdefault(len(segments), []).append(_Pattern(segments, handler))
        self._seen: dict[str, tuple[Handler, str | None, str | None] | None] = {}

    def match(self, path: str) -> tuple[Handler, Call] | None:
        try:
            route = self._seen[path]
        except KeyError:
            route = self._seen[path] = self._lookup(path)
            if len(self._seen) > _MATCH_CACHE_SIZE:
                self._seen.clear()
        if route is None:
            return None
        handler, model, version = route
        return handler, Call({}, model, version, b"", self._json)

    def _lookup(self, path: str) -> tuple[Handler, str | None, str | None] | None:
        parts = path.split("/")
        for pattern in self._by_length.get(len(parts), ()):
            params = pattern.match(parts)
            if params is not None:
                return pattern.handler, params.get("model"), params.get("version")
        return None

    async def serve(
        self,
        matched: tuple[Handler, Call],
        service: InferenceService,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        handler, call = matched
        try:
            if scope["method"] != "POST":
                raise HTTPException(405, "Method Not Allowed", {"Allow": "POST"})
            call.headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            limit = service.settings.safeguards.max_request_bytes
            check_declared_length(call.headers.get("content-length"), limit)
            call.body = await _read_body(receive, limit)
            answer = await handler(service, call)
        except _Disconnected:
            return
        except Exception as exc:
            status, body, headers = error_parts(exc)
            answer = Answer(body, JSON, headers, status)
        if answer.stream is not None:
            await _send_stream(answer, answer.stream, receive, send)
        else:
            await _send(answer, send)


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
