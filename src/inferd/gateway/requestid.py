"""Request ids: the caller's (``X-Request-Id`` / ``x-request-id`` metadata) when it is
safe to echo, else a new one; held in a context variable for the request's every log line.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import os
import re
from typing import Final

#: Most characters of a caller's request id; a longer one is replaced by a new id.
MAX_LENGTH: Final = 128
_SAFE: Final = re.compile(r"[A-Za-z0-9._:@/+=-]{1," + str(MAX_LENGTH) + "}")

current: Final[contextvars.ContextVar[str | None]] = contextvars.ContextVar(
    "inferd_request_id", default=None
)


class _Ids:
    """32 hex digits: 80 random bits drawn once per process, then a counter. Unique across
    processes and restarts as a random id is, without a system call per request (a UUID4
    asks the kernel for 16 random bytes each time)."""

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        self._prefix = os.urandom(10).hex()
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFF:012x}"


_ids: Final = _Ids()
# A forked worker must not repeat its parent's ids.
os.register_at_fork(after_in_child=_ids.reseed)


def new_id() -> str:
    return _ids.next()


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
