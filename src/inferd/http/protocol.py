"""The HTTP/1.1 connection: uvicorn's httptools protocol plus the bounds it lacks.

uvicorn with httptools gives an idle keep-alive timeout and, with ``limit_concurrency``, a
503 for requests past a count (the connection itself is still accepted and held). It sets
no bound on the size of a request head (httptools buffers a header line of any length),
on the number of headers, on how long a client may take to send its head or its body, or
on open connections. This protocol adds them (``limits.http``):

- The request head (request line and headers) is counted as its bytes arrive; past
  ``max_header_bytes``, or past ``max_headers`` fields, the answer is 431 and the
  connection closes. Nothing past the bound plus one read is ever buffered.
- A head must arrive within ``header_timeout_s`` of the connection opening (or of its first
  byte, for the next request on a keep-alive connection); a body within ``body_timeout_s``
  of its head. Past either: 408 if anything of the request arrived, then close.
- Past ``max_connections`` open connections of the process, a new one gets 503 with
  ``Retry-After`` and is closed at once.
- A WebSocket upgrade is checked against what the websockets library will read of the
  handshake (lines of 8 KiB, 128 headers): past it, 431 and close, instead of a handshake
  that is never answered.
- While the server drains, every answer carries ``Connection: close``.

What it costs per request: nothing per wait. A connection has one timer at most; a wait
(head, body, keep-alive) only sets when it ends, and the timer, when it fires early, sets
itself again for that time, so a busy keep-alive connection arms about one timer per
timeout instead of one per request. An answer whose length is known goes out in one write
(head and body together) instead of two system calls.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from typing import Any, Final, cast

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from inferd.http import direct
from inferd.settings import HttpLimits

#: What the websockets library reads of a handshake (websockets.legacy.http).
WS_MAX_LINE: Final = 8192
WS_MAX_HEADERS: Final = 128

#: Bytes a header field adds to the head beside its name and value (": " and CRLF).
_FIELD_OVERHEAD: Final = 4
#: "GET " ... " HTTP/1.1\r\n" around the request target.
_REQUEST_LINE_OVERHEAD: Final = 20
#: After a refusal, how long what the client still sends is read and dropped before the
#: connection closes, so that the client reads the answer instead of a reset.
LINGER_S: Final = 1.0


#: A body up to this size goes out in the same write as its head (joining costs a copy).
COALESCE_BYTES: Final = 256 * 1024


class _Wait(enum.Enum):
    """What the connection waits for, and so which bound applies."""

    NOTHING = 0  # a request is being answered
    HEAD = 1
    BODY = 2
    IDLE = 3  # keep-alive: the next request


class _OneWrite:
    """The transport a request's answer is written to: a head whose body follows (a known,
    non-zero ``Content-Length``) waits for it, and the two leave in one write."""

    __slots__ = ("_cycle", "_expect_head", "_head", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._cycle: Any = None
        self._expect_head = False
        self._head: bytes | None = None

    def arm(self, cycle: Any) -> None:
        """The next write is ``cycle``'s head."""
        self._cycle = cycle
        self._expect_head = True
        self._head = None

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            if len(data) <= COALESCE_BYTES:
                self._transport.write(head + data)
            else:
                self._transport.write(head)
                self._transport.write(data)
            return
        if self._expect_head:
            self._expect_head = False
            cycle = self._cycle
            if (
                cycle.chunked_encoding is False
                and cycle.expected_content_length > 0
                and cycle.scope["method"] != "HEAD"
            ):
                self._head = data
                return
        self._transport.write(data)

    def close(self) -> None:
        self._head = None  # an answer cut short: the connection closes without it
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request that is refused."""


def _answer(status: int, message: str, extra: bytes = b"") -> bytes:
    body = message.encode()
    return b"".join(
        [
            STATUS_LINE[status],
            b"content-type: application/json\r\n",
            b"connection: close\r\n",
            extra,
            b"content-length: %d\r\n\r\n" % (len(body) + 12),
            b'{"error":"',
            body,
            b'"}',
        ]
    )


TOO_LARGE: Final = _answer(431, "request head too large")
TOO_MANY: Final = _answer(431, "too many request headers")
TIMEOUT: Final = _answer(408, "request not received in time")
OVERLOADED: Final = _answer(503, "too many open connections", b"retry-after: 1\r\n")


class LimitedHttpProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection with inferd's bounds; built by :func:`protocol_class`."""

    limits: HttpLimits
    draining: Callable[[], bool]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn annotates its keep-alive timeout as whole seconds; call_later takes any.
        self.timeout_keep_alive = self.limits.keepalive_timeout_s  # type: ignore[assignment]
        self._in_head = True  # waiting for (part of) a request head
        self._head_bytes = 0  # bytes received since that head began
        self._chunk = 0  # bytes of the chunk being parsed
        self._body_pending = False
        self._refusal: bytes | None = None
        self._refused = False
        self._linger: asyncio.TimerHandle | None = None
        # The one timer: it fires at or before ``_due``, when ``_waiting`` is late.
        self._timer: asyncio.TimerHandle | None = None
        self._waiting = _Wait.NOTHING
        self._due = 0.0
        self._one_write: _OneWrite | None = None
        app = self.app  # inferd's front answers small inference requests directly
        self._front = cast(direct.Front, app) if hasattr(app, "direct_answer") else None

    # -- connection --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            transport.write(OVERLOADED)
            transport.close()
            return
        self._one_write = _OneWrite(transport)
        self._expect(_Wait.HEAD, self.limits.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)

    def _cancel_timers(self) -> None:
        self._waiting = _Wait.NOTHING
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- the one timer -----------------------------------------------------------------------

    def _expect(self, wait: _Wait, seconds: float) -> None:
        """Wait for ``wait`` at most ``seconds`` from now (no timer object when one is
        armed already for no later than that)."""
        due = self.loop.time() + seconds
        self._waiting = wait
        self._due = due
        timer = self._timer
        if timer is None:
            self._timer = self.loop.call_at(due, self._tick)
        elif timer.when() > due:
            timer.cancel()
            self._timer = self.loop.call_at(due, self._tick)

    def _tick(self) -> None:
        self._timer = None
        wait = self._waiting
        if wait is _Wait.NOTHING:
            return
        if self.loop.time() < self._due:
            self._timer = self.loop.call_at(self._due, self._tick)
            return
        self._waiting = _Wait.NOTHING
        if wait is _Wait.HEAD:
            self._head_late()
        elif wait is _Wait.BODY:
            self._body_late()
        else:
            self.timeout_keep_alive_handler()

    def _unset_keepalive_if_required(self) -> None:
        # uvicorn's keep-alive timer is not used: the wait is the one timer's.
        if self._waiting is _Wait.IDLE:
            self._waiting = _Wait.NOTHING

    def on_response_complete(self) -> None:
        """uvicorn's, with the keep-alive wait on the one timer."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self._expect(_Wait.IDLE, self.timeout_keep_alive)

    def data_received(self, data: bytes) -> None:
        if self._refused or self.transport.is_closing():
            return  # what follows a refusal is dropped
        if self._waiting is _Wait.IDLE:
            self._waiting = _Wait.NOTHING
        self._chunk = len(data)
        if self._in_head:
            self._head_bytes += self._chunk
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._refusal is None and self._should_upgrade():
                self.handle_websocket_upgrade()
                return
            if self._refusal is None:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError:
            if self._refusal is None:
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)
                return
        if (
            self._refusal is None
            and self._in_head
            and self._head_bytes > self.limits.max_header_bytes
        ):
            # Past the bytes of a head: too many fields, when they are what made it so.
            many = len(self.headers) > self.limits.max_headers
            self._refusal = TOO_MANY if many else TOO_LARGE
        if self._refusal is not None:
            # A pipelined request refused while an earlier one is answered: no answer.
            under_way = self.cycle is not None and not self.cycle.response_complete
            self._refuse(b"" if under_way else self._refusal)
        elif self._in_head:
            # Part of a head arrived (a whole one ends the wait and resets the count).
            if self._head_bytes and self._waiting is not _Wait.HEAD:
                self._expect(_Wait.HEAD, self.limits.header_timeout_s)
        elif self._body_pending and self._waiting is not _Wait.BODY:
            self._expect(_Wait.BODY, self.limits.body_timeout_s)

    def _refuse(self, answer: bytes) -> None:
        """Send ``answer``, then close: at once when there is nothing to say, else after
        the client closes or :data:`LINGER_S`."""
        self._cancel_timers()
        self._refused = True
        if not answer or not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write(answer)
        self.transport.write_eof()
        self._linger = self.loop.call_later(LINGER_S, self.transport.close)

    def handle_websocket_upgrade(self) -> None:
        self._cancel_timers()
        super().handle_websocket_upgrade()

    # -- parser callbacks --------------------------------------------------------------------

    def _stop(self, answer: bytes) -> None:
        self._refusal = answer
        raise _Refused

    def on_headers_complete(self) -> None:
        """The head's bounds, checked once it is parsed: its fields counted, its size
        measured (only when what arrived could hold a head past the bound: the bytes
        since it began, or the chunk it came in), an upgrade's lines against what the
        websockets library reads. A head still arriving is bounded by its bytes in
        :meth:`data_received`."""
        received = max(self._head_bytes, self._chunk)
        self._in_head = False
        self._head_bytes = 0
        if self._waiting is _Wait.HEAD:
            self._waiting = _Wait.NOTHING
        headers = self.headers
        limits = self.limits
        if len(headers) > limits.max_headers:
            self._stop(TOO_MANY)
        if received > limits.max_header_bytes and _head_size(self.url, headers) > (
            limits.max_header_bytes
        ):
            self._stop(TOO_LARGE)
        upgrade = self.parser.should_upgrade() and self._should_upgrade()
        if upgrade and (
            _longest_line(self.url, headers) > WS_MAX_LINE or len(headers) > WS_MAX_HEADERS
        ):
            self._stop(TOO_LARGE)
        self._body_pending = True
        if not upgrade and self._front is not None:
            quick = direct.begin(self, self._front)
            if quick is not None:
                self.cycle = quick  # type: ignore[assignment]  # duck-typed, no runtime cast
                return
        before = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is before or cycle is None:
            return  # an upgrade: no HTTP answer of ours
        if self.draining():
            cycle.keep_alive = False
        if (before is None or before.response_complete) and self._one_write is not None:
            # Not for a pipelined request: its answer is written after the one before.
            self._one_write.arm(cycle)
            # Duck-typed: the cycle writes, closes and asks is_closing(); the rest passes on.
            cycle.transport = cast(asyncio.Transport, self._one_write)

    def on_message_complete(self) -> None:
        self._body_pending = False
        if self._waiting is _Wait.BODY:
            self._waiting = _Wait.NOTHING
        self._in_head = True
        super().on_message_complete()
        quick: object = self.cycle
        if type(quick) is direct.Cycle and self._front is not None:
            direct.start(self, self._front, quick)

    # -- timers ------------------------------------------------------------------------------

    def _head_late(self) -> None:
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head waits on our answer, not on the client.
            self._expect(_Wait.HEAD, self.limits.header_timeout_s)
            return
        self._refuse(TIMEOUT if self._head_bytes else b"")

    def _body_late(self) -> None:
        cycle = self.cycle
        answer = TIMEOUT
        if cycle is not None:
            if cycle.response_started:
                answer = b""
            # The application's receive() answers http.disconnect; what it sends is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        self._refuse(answer)


def _head_size(url: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    """The request target and the fields, with what each field line adds."""
    return len(url) + sum(len(name) + len(value) + _FIELD_OVERHEAD for name, value in headers)


def _longest_line(url: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    lines = (len(name) + len(value) + _FIELD_OVERHEAD for name, value in headers)
    return max(len(url) + _REQUEST_LINE_OVERHEAD, *lines)


def protocol_class(limits: HttpLimits, draining: Callable[[], bool]) -> type[LimitedHttpProtocol]:
    """The protocol class uvicorn builds per connection, bound to these limits."""
    return type(
        "InferdHttpProtocol",
        (LimitedHttpProtocol,),
        {"limits": limits, "draining": staticmethod(draining)},
    )
