"""Core error codes -> HTTP status, and the one JSON error body."""

from __future__ import annotations

import logging
import math
from typing import Final

import orjson
from starlette.responses import Response

from inferd.errors import ErrorCode, InferdError

log = logging.getLogger("inferd.http")

HTTP_STATUS: Final[dict[ErrorCode, int]] = {
    ErrorCode.INVALID_ARGUMENT: 400,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.PERMISSION_DENIED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.RESOURCE_EXHAUSTED: 429,
    ErrorCode.INTERNAL: 500,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.DEADLINE_EXCEEDED: 504,
}


INTERNAL_ERROR: Final = b'{"error":"internal server error"}'


def error_parts(exc: InferdError) -> tuple[int, bytes, dict[str, str]]:
    """Status, JSON body and headers for a core error."""
    headers = {}
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    if exc.code is ErrorCode.UNAUTHENTICATED:
        headers["WWW-Authenticate"] = "Bearer"
    return HTTP_STATUS[exc.code], orjson.dumps({"error": exc.message}), headers


def error_response(exc: InferdError) -> Response:
    status, body, headers = error_parts(exc)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def internal_error_response(exc: BaseException) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return Response(INTERNAL_ERROR, status_code=500, media_type="application/json")
