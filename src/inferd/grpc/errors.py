"""Core error codes -> gRPC status, and the one place a failed call is answered (every
method's errors reach :func:`abort` through the one wrapper, ``inferd.grpc.register``)."""

from __future__ import annotations

import logging
import math
from typing import Final, NoReturn

import grpc
from google.protobuf.message import Message

from inferd.errors import ErrorCode, InferdError, RateLimited

log = logging.getLogger("inferd.grpc")

GRPC_STATUS: Final[dict[ErrorCode, grpc.StatusCode]] = {
    ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.CONFLICT: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.PAYLOAD_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorCode.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorCode.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
}

INTERNAL_MESSAGE: Final = "internal server error"


def status_of(exc: Exception) -> tuple[grpc.StatusCode, str]:
    """The status and client message for an error; anything not ours is a logged bug."""
    if isinstance(exc, InferdError):
        return GRPC_STATUS[exc.code], exc.message
    log.error("unhandled error", exc_info=exc)
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE


def add_trailing(
    context: grpc.aio.ServicerContext[bytes, Message], *pairs: tuple[str, str]
) -> None:
    """Add ``pairs`` to the call's trailing metadata (setting it replaces what was set:
    the request id, a cache flag, a refusal's fields may each be there)."""
    context.set_trailing_metadata((*(context.trailing_metadata() or ()), *pairs))


async def abort(context: grpc.aio.ServicerContext[bytes, Message], exc: Exception) -> NoReturn:
    """End the call with the status of ``exc`` (raises, as ``context.abort`` does)."""
    code, message = status_of(exc)
    if isinstance(exc, InferdError) and exc.retry_after_s is not None:
        metadata = [("retry-after", str(max(1, math.ceil(exc.retry_after_s))))]
        if isinstance(exc, RateLimited):
            metadata.extend(exc.fields().items())
        add_trailing(context, *metadata)
    await context.abort(code, message)
