"""Core error codes -> HTTP status, and the one function that renders an error.

Every HTTP error answer (the gateway's refusals, the fast inference routes, FastAPI's
routes, unknown paths and wrong methods) is ``{"error": message, "request_id": id}``
built by :func:`error_parts`.
"""

from __future__ import annotations

import logging
import math
from typing import Final

import orjson
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Send

from inferd.errors import ErrorCode, InferdError, RateLimited
from inferd.gateway import requestid

log = logging.getLogger("inferd.http")

HTTP_STATUS: Final[dict[ErrorCode, int]] = {
    ErrorCode.INVALID_ARGUMENT: 400,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.PERMISSION_DENIED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.RESOURCE_EXHAUSTED: 429,
    ErrorCode.INTERNAL: 500,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.DEADLINE_EXCEEDED: 504,
}

INTERNAL_MESSAGE: Final = "internal server error"

Headers = list[tuple[bytes, bytes]]


def status_of(exc: BaseException) -> tuple[int, str]:
    """The HTTP status and client message of any exception: a core error by its code (the
    one table), a router's 404/405 by its status, anything else a logged 500."""
    if isinstance(exc, InferdError):
        return HTTP_STATUS[exc.code], exc.message
    if isinstance(exc, HTTPException):
        return exc.status_code, str(exc.detail)
    log.error("unhandled error", exc_info=exc)
    return 500, INTERNAL_MESSAGE


def error_parts(exc: BaseException) -> tuple[int, bytes, Headers]:
    """Status, JSON body and headers (beside content type and length) for any exception:
    a core error by its code, a router's 404/405 by its status, anything else a logged 500."""
    headers: Headers = []
    status, message = status_of(exc)
    if isinstance(exc, InferdError):
        if exc.retry_after_s is not None:
            headers.append((b"retry-after", str(max(1, math.ceil(exc.retry_after_s))).encode()))
        if isinstance(exc, RateLimited):
            headers += [(k.encode(), v.encode()) for k, v in exc.fields().items()]
        if exc.code is ErrorCode.UNAUTHENTICATED:
            headers.append((b"www-authenticate", b"Bearer"))
        if exc.model_version is not None:
            headers.append((b"x-model-version", exc.model_version.encode()))
    elif isinstance(exc, HTTPException):
        headers += [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]
    body = orjson.dumps({"error": message, "request_id": requestid.current.get()})
    return status, body, headers


def error_response(exc: BaseException) -> Response:
    """:func:`error_parts` as a Starlette response (FastAPI's exception handlers)."""
    status, body, headers = error_parts(exc)
    response = Response(body, status_code=status, media_type="application/json")
    response.raw_headers.extend(headers)
    return response


async def send_json(status: int, body: bytes, headers: Headers, send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
