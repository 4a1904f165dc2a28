"""Request ids: the caller's (``X-Request-Id`` / ``x-request-id`` metadata) when it is
safe to echo, else a new one; held in a context variable for the request's every log line.
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from typing import Final

#: Most characters of a caller's request id; a longer one is replaced by a new id.
MAX_LENGTH: Final = 128
_SAFE: Final = re.compile(r"[A-Za-z0-9._:@/+=-]{1," + str(MAX_LENGTH) + "}")

current: Final[contextvars.ContextVar[str | None]] = contextvars.ContextVar(
    "inferd_request_id", default=None
)


def new_id() -> str:
    return uuid.uuid4().hex


def accept(given: str | None) -> str:
    """``given`` when it is 1-128 characters of letters, digits and ``._:@/+=-``; else a
    new id (so a caller cannot put spaces, quotes or control characters in the log)."""
    if given is not None and _SAFE.fullmatch(given):
        return given
    return new_id()


class RequestIdFilter(logging.Filter):
    """Gives every record a ``request_id`` attribute: the current request's, or ``-``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current.get() or "-"
        return True


def install(handlers: list[logging.Handler]) -> None:
    """Add the filter to ``handlers`` (the root logger's, as a server configures them)."""
    for handler in handlers:
        handler.addFilter(RequestIdFilter())
