"""The server's refusals as the client raises them: inferd's own exception tree.

An answer's HTTP status or gRPC status code is turned back into the neutral
:class:`~inferd.errors.ErrorCode` by reversing the server's tables (``http/errors.py``,
``grpc/errors.py``), so ``except inferd.errors.NotFound`` catches a 404 and a NOT_FOUND
alike. A transport failure (no connection, a timeout) is translated once, here.
"""

from __future__ import annotations

from typing import Final

from inferd.errors import (
    Conflict,
    DeadlineExceeded,
    ErrorCode,
    InferdError,
    InternalError,
    InvalidArgument,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

#: Neutral code -> the class the client raises.
ERROR_CLASS: Final[dict[ErrorCode, type[InferdError]]] = {
    ErrorCode.INVALID_ARGUMENT: InvalidArgument,
    ErrorCode.NOT_FOUND: NotFound,
    ErrorCode.CONFLICT: Conflict,
    ErrorCode.UNAVAILABLE: Unavailable,
    ErrorCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    ErrorCode.PAYLOAD_TOO_LARGE: PayloadTooLarge,
    ErrorCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    ErrorCode.UNAUTHENTICATED: Unauthenticated,
    ErrorCode.PERMISSION_DENIED: PermissionDenied,
    ErrorCode.INTERNAL: InternalError,
}

#: HTTP status -> neutral code (the reverse of ``inferd.http.errors.HTTP_STATUS``).
HTTP_CODE: Final[dict[int, ErrorCode]] = {
    400: ErrorCode.INVALID_ARGUMENT,
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.PERMISSION_DENIED,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.INVALID_ARGUMENT,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    429: ErrorCode.RESOURCE_EXHAUSTED,
    500: ErrorCode.INTERNAL,
    503: ErrorCode.UNAVAILABLE,
    504: ErrorCode.DEADLINE_EXCEEDED,
}

#: Statuses worth another try of an idempotent call: the server refused before doing work.
RETRY_STATUS: Final = frozenset({429, 503})


def server_error(
    code: ErrorCode,
    message: str,
    *,
    request_id: str | None = None,
    retry_after_s: float | None = None,
) -> InferdError:
    """The exception for a refusal; the request id (when the server sent one) is named in
    the message, so a log line of the client leads to the server's."""
    text = message if request_id is None else f"{message} (request id {request_id})"
    error = ERROR_CLASS[code](text, retry_after_s=retry_after_s)
    error.request_id = request_id
    return error


def http_error(
    status: int, message: str, request_id: str | None, retry_after_s: float | None
) -> InferdError:
    code = HTTP_CODE.get(
        status, ErrorCode.INTERNAL if status >= 500 else ErrorCode.INVALID_ARGUMENT
    )
    return server_error(
        code, f"HTTP {status}: {message}", request_id=request_id, retry_after_s=retry_after_s
    )


def retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` value in seconds (an HTTP date is not sent by inferd: None)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def unreachable(target: str, exc: Exception) -> Unavailable:
    return Unavailable(f"cannot reach {target}: {exc.__class__.__name__}: {exc}")


def timed_out(target: str) -> DeadlineExceeded:
    return DeadlineExceeded(f"no answer from {target} before the deadline")
