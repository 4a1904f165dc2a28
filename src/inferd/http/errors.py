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


def error_response(exc: InferdError) -> Response:
    headers = {}
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    if exc.code is ErrorCode.UNAUTHENTICATED:
        headers["WWW-Authenticate"] = "Bearer"
    return Response(
        orjson.dumps({"error": exc.message}),
        status_code=HTTP_STATUS[exc.code],
        media_type="application/json",
        headers=headers,
    )


def internal_error_response(exc: BaseException) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return Response(
        b'{"error":"internal server error"}', status_code=500, media_type="application/json"
    )
