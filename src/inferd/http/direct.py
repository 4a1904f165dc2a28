"""Inference requests answered from the connection, without an ASGI cycle.

A small inference request (``POST`` to a fast route of the table whose answer is one body,
``Content-Length`` up to :data:`MAX_BODY`, no ``Expect``, not pipelined behind an answer
still under way, no middleware configured) is served by the connection itself once its
whole body has arrived: one task runs the front's :meth:`~inferd.http.front.Front.
direct_answer` (the same request id, admission, handler, errors and access-log line as the
ASGI path); the status line, headers and body go out in one write, with the other answers
finished in the same loop turn (:class:`Outbox`). No scope-to-message
round trip, no ``receive``/``send`` coroutines, no per-request event object: on the tiny
model that machinery cost about as much as the rest of uvicorn's request handling
(docs/performance.md, "The hot path, round 5").

Every other request — other paths, methods, chunked or larger bodies, ``Expect:
100-continue``, a pipelined request, any middleware (CORS) — takes uvicorn's ASGI path.
The connection's bounds (``http/protocol.py``) apply to both: head size and count, head and
body timeouts, keep-alive, drain (``Connection: close``).
"""

from __future__ import annotations

import logging
from typing import Any, Final, Protocol

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from inferd.http.raw import Answer
from inferd.http.routes import Match

log = logging.getLogger("inferd.http")

#: Largest body served directly: below uvicorn's read high-water mark, so reading is never
#: paused for it (the ASGI path resumes reading from ``receive``; this one has none).
MAX_BODY: Final = 64 * 1024

INTERNAL_ERROR: Final = (
    b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 21\r\nconnection: close\r\n\r\nInternal Server Error"
)


class Connection(Protocol):
    """What this module reads and calls of the connection (``http/protocol.py``'s class,
    a subclass of uvicorn's httptools protocol)."""

    parser: Any
    url: bytes
    headers: list[tuple[bytes, bytes]]
    scope: Any
    expect_100_continue: bool
    limit_concurrency: int | None
    root_path: str
    cycle: Any
    loop: Any
    tasks: set[Any]
    server_state: Any
    flow: Any
    transport: Any

    def draining(self) -> bool: ...

    def on_response_complete(self) -> None: ...


class Recipient(Protocol):
    """What :class:`Outbox` uses of a connection."""

    loop: Any
    transport: Any

    def on_response_complete(self) -> None: ...


class Front(Protocol):
    """What the connection needs of the application (``http/front.py``)."""

    #: Direct requests read whose answer has not started (counted in by :func:`start`,
    #: out by ``direct_answer``).
    arriving: int
    #: Where finished answers wait for the end of the loop's turn.
    outbox: Outbox

    def direct_match(self, path: str) -> Match | None: ...

    async def direct_answer(self, scope: Any, match: Match, body: bytes) -> Answer: ...


class _NoWaiter:
    """A direct cycle's message event: uvicorn's parser callbacks set it; nothing waits."""

    __slots__ = ()

    def set(self) -> None:
        pass


class Cycle:
    """A direct request in progress. It has the attributes uvicorn's parser callbacks and
    the connection's bounds read and set on a cycle (body, ``message_event``, completion,
    keep-alive, disconnection)."""

    __slots__ = (
        "body",
        "disconnected",
        "keep_alive",
        "match",
        "more_body",
        "response_complete",
        "response_started",
        "scope",
    )

    message_event: Final = _NoWaiter()

    def __init__(self, scope: Any, match: Match, keep_alive: bool) -> None:
        self.scope = scope
        self.match = match
        self.keep_alive = keep_alive
        self.body = bytearray()
        self.more_body = True
        self.disconnected = False
        self.response_started = False
        self.response_complete = False


def begin(protocol: Connection, front: Front) -> Cycle | None:
    """A direct cycle for the request whose head was just parsed, or None: the request
    takes the ASGI path. Called from ``on_headers_complete`` (not for an upgrade)."""
    parser = protocol.parser
    if parser.get_method() != b"POST" or protocol.expect_100_continue:
        return None
    existing = protocol.cycle
    if existing is not None and not existing.response_complete:
        return None  # pipelined: answered after the one before, by uvicorn's queue
    if protocol.limit_concurrency is not None or protocol.root_path:
        return None  # uvicorn answers past its limit, and prefixes paths with a root
    length = _content_length(protocol.headers)
    if length is None or length > MAX_BODY:
        return None
    try:
        url = httptools.parse_url(protocol.url)
        raw_path = url.path
        path = raw_path.decode("ascii")
    except (httptools.HttpParserInvalidURLError, UnicodeDecodeError):
        return None
    if "%" in path:
        return None  # uvicorn unquotes it
    match = front.direct_match(path)
    if match is None:
        return None
    http_version = parser.get_http_version()
    scope = protocol.scope
    scope["method"] = "POST"
    if http_version != "1.1":
        scope["http_version"] = http_version
    scope["path"] = path
    scope["raw_path"] = raw_path
    scope["query_string"] = url.query or b""
    keep_alive = http_version != "1.0" and parser.should_keep_alive() and not protocol.draining()
    return Cycle(scope, match, keep_alive)


def start(protocol: Connection, front: Front, cycle: Cycle) -> None:
    """The whole body arrived: answer it in a task (tracked with uvicorn's, so a graceful
    shutdown waits for it), counted as arriving until the task starts: requests read in
    one loop turn see each other, so none of them runs alone and they share a batch.
    (Only a task cancelled before it starts, at the end of a shutdown, leaves the count
    high; that turns off lone runs, nothing else.)"""
    front.arriving += 1
    front.outbox.expected += 1
    task = protocol.loop.create_task(_answer(protocol, front, cycle))
    task.add_done_callback(protocol.tasks.discard)
    protocol.tasks.add(task)


async def _answer(protocol: Connection, front: Front, cycle: Cycle) -> None:
    try:
        answer = await front.direct_answer(cycle.scope, cycle.match, bytes(cycle.body))
        if answer.stream is not None:
            raise RuntimeError("a direct route answered with a stream")
        data = _encode(answer, cycle.keep_alive, protocol.server_state.default_headers)
    except Exception as exc:  # a bug: errors of requests are answers already
        log.error("unhandled error in a direct answer", exc_info=exc)
        data = INTERNAL_ERROR
        cycle.keep_alive = False
    finally:
        cycle.response_started = True
    if protocol.flow.write_paused and not cycle.disconnected:
        await protocol.flow.drain()
    front.outbox.add(protocol, cycle, data)


class Outbox:
    """The answers that one turn of the event loop finished, written back to back at the
    loop's next turn.

    On loopback a write hands the answer to the client at once, and wakes the client's
    thread when it sleeps. An answer written as soon as it was ready had the Python of
    the next answer before the next write, time enough for the client to take it and
    sleep again: nearly every write woke the client anew (wrk: 0.8 context switches per
    answer, against 0.06 written back to back; tiny model, 64 connections, 1.31x req/s;
    docs/performance.md, round 9).

    The one answer that no other read request awaits (one connection, say) is written at
    once, without waiting for the next turn. One event loop per outbox (the front's)."""

    __slots__ = ("_answers", "expected")

    def __init__(self) -> None:
        self._answers: list[tuple[Recipient, Cycle, bytes]] = []
        #: Requests read whose answer was not added yet (:func:`start` counts them in).
        #: Only a task cancelled before its answer (a shutdown) leaves it high: then
        #: every answer waits for the turn's end, nothing else changes.
        self.expected = 0

    def add(self, protocol: Recipient, cycle: Cycle, data: bytes) -> None:
        self.expected -= 1
        if cycle.disconnected:
            return
        if not self._answers:
            if not self.expected:  # no other answer to wait for
                _write(protocol, cycle, data)
                return
            protocol.loop.call_soon(self.flush)
        self._answers.append((protocol, cycle, data))

    def flush(self) -> None:
        answers, self._answers = self._answers, []
        for protocol, cycle, data in answers:
            if cycle.disconnected:
                continue  # the client went away during the turn
            try:
                _write(protocol, cycle, data)
            except Exception as exc:  # a bug: the other answers are written still
                log.error("unhandled error writing a direct answer", exc_info=exc)


def _write(protocol: Recipient, cycle: Cycle, data: bytes) -> None:
    transport = protocol.transport
    transport.write(data)
    cycle.response_complete = True
    if not cycle.keep_alive:
        transport.close()
    protocol.on_response_complete()


def _encode(answer: Answer, keep_alive: bool, default: list[tuple[bytes, bytes]]) -> bytes:
    """Status line, uvicorn's default headers (``date``), the answer's, and its body."""
    parts = [STATUS_LINE[answer.status]]
    for name, value in default:
        parts += (name, b": ", value, b"\r\n")
    parts.append(
        b"content-type: %s\r\ncontent-length: %d\r\n" % (answer.content_type, len(answer.body))
    )
    for name, value in answer.headers:
        if b"\n" in value or b"\r" in value:
            raise ValueError(f"invalid value of answer header {name!r}")
        parts += (name, b": ", value, b"\r\n")
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    parts += (b"\r\n", answer.body)
    return b"".join(parts)


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The declared length; None when there is none, it is not a number, or the body is
    chunked."""
    length = None
    for name, value in headers:
        if name == b"content-length":
            if length is not None or not value.isdigit():
                return None
            length = int(value)
        elif name == b"transfer-encoding":
            return None
    return length
