"""The one exception tree of inferd.

Every error raised by the core carries a neutral :class:`ErrorCode`. Transports map the
code to their own status (``inferd.http.errors``, ``inferd.grpc.errors``) with one table
each; nothing in the core knows about HTTP or gRPC.
"""

from __future__ import annotations

import enum
import math
from typing import Final

#: Most characters of a client's value echoed in an error message.
ECHO_LIMIT: Final = 64
#: Most characters of any error message (a gRPC status travels in an 8 KB header).
MESSAGE_LIMIT: Final = 1024


def clip(value: object, limit: int = ECHO_LIMIT) -> str:
    """A client-given value as an error message may echo it: cut to ``limit`` characters."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


class ErrorCode(enum.Enum):
    INVALID_ARGUMENT = "invalid_argument"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    UNAVAILABLE = "unavailable"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    UNAUTHENTICATED = "unauthenticated"
    PERMISSION_DENIED = "permission_denied"
    INTERNAL = "internal"


class InferdError(Exception):
    """Base class: a message meant for the client and a neutral code."""

    code: ErrorCode = ErrorCode.INTERNAL
    #: The model version that was serving the request when it failed (None: the request
    #: failed before a version was chosen); transports name it (``X-Model-Version``).
    model_version: str | None = None
    #: The server's id of the request that failed (set by inferd.client on what it raises).
    request_id: str | None = None

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        message = clip(message, MESSAGE_LIMIT)
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


class InvalidArgument(InferdError):
    code = ErrorCode.INVALID_ARGUMENT


class NotFound(InferdError):
    code = ErrorCode.NOT_FOUND


class Conflict(InferdError):
    """The request contradicts what is going on (a rollout is already running)."""

    code = ErrorCode.CONFLICT


class Unavailable(InferdError):
    code = ErrorCode.UNAVAILABLE


class ResourceExhausted(InferdError):
    code = ErrorCode.RESOURCE_EXHAUSTED


class RateLimited(ResourceExhausted):
    """A principal's rate limit is spent: ``limit`` per window, ``remaining`` of it, the
    window resetting in ``reset_s`` seconds (also the retry delay)."""

    def __init__(self, message: str, *, limit: int, remaining: int, reset_s: float) -> None:
        super().__init__(message, retry_after_s=reset_s)
        self.limit = limit
        self.remaining = remaining
        self.reset_s = reset_s

    def fields(self) -> dict[str, str]:
        """The RateLimit-* header fields (lower case, as gRPC metadata wants them)."""
        return {
            "ratelimit-limit": str(self.limit),
            "ratelimit-remaining": str(self.remaining),
            "ratelimit-reset": str(max(1, math.ceil(self.reset_s))),
        }


class PayloadTooLarge(InferdError):
    code = ErrorCode.PAYLOAD_TOO_LARGE


class DeadlineExceeded(InferdError):
    code = ErrorCode.DEADLINE_EXCEEDED


class Unauthenticated(InferdError):
    code = ErrorCode.UNAUTHENTICATED


class PermissionDenied(InferdError):
    code = ErrorCode.PERMISSION_DENIED


class InternalError(InferdError):
    code = ErrorCode.INTERNAL


class ModelLoadError(InferdError):
    """A model version could not be loaded; the reason is kept as its state."""

    code = ErrorCode.UNAVAILABLE


class ConfigError(InferdError):
    """A model.yaml or settings value is invalid; the message names the field."""

    code = ErrorCode.INVALID_ARGUMENT
