"""The HTTP/1.1 connection limits, on a real socket served by uvicorn with inferd's protocol."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from inferd.settings import HttpLimits
from tests.http import loopback

Connect = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]

WS_HEADERS = (
    b"Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


class App:
    """Answers every request with the size of its body; accepts WebSockets."""

    def __init__(self) -> None:
        self.disconnected = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1000})
            return
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnected.set()
                return
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = str(size).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


class Served:
    def __init__(self, app: App, port: int, draining: list[bool]) -> None:
        self.app = app
        self.port = port
        self.draining = draining

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


@contextlib.asynccontextmanager
async def serving(**limits: Any) -> AsyncIterator[Served]:
    draining = [False]
    app = App()
    async with loopback.serve(app, HttpLimits(**limits), lambda: draining[0], ws="auto") as port:
        yield Served(app, port, draining)


async def exchange(served: Served, data: bytes, timeout: float = 5.0) -> tuple[bytes, float]:
    """Send ``data``, read until the server closes; the answer and how long it took, from
    before the connection opened (the server's timers start when it accepts)."""
    started = time.monotonic()
    reader, writer = await served.connect()
    writer.write(data)
    with contextlib.suppress(ConnectionResetError):
        await writer.drain()
    try:
        answer = await asyncio.wait_for(reader.read(), timeout)
    except ConnectionResetError:
        answer = b""
    writer.close()
    return answer, time.monotonic() - started


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


async def test_a_head_past_the_limit_is_431_and_closed() -> None:
    async with serving(max_header_bytes=4096) as served:
        answer, _ = await exchange(served, b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n")
        assert status(answer) == 431
        assert b"connection: close" in answer


async def test_a_header_line_is_refused_before_it_ends() -> None:
    async with serving(max_header_bytes=4096) as served:
        reader, writer = await served.connect()
        writer.write(b"GET / HTTP/1.1\r\nX-Big: ")
        for _ in range(64):  # 64 KiB of one header line, never finished
            writer.write(b"a" * 1024)
            with contextlib.suppress(ConnectionResetError):
                await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert status(answer) == 431


async def test_a_pipelined_head_past_the_limit_in_the_same_chunk_is_refused() -> None:
    """The second request's head arrives whole in the chunk of the first: it is measured
    all the same (a head is bounded however it is split into reads)."""
    async with serving(max_header_bytes=4096) as served:
        first = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        second = b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 3000 + b"\r\nX-Big2: " + b"b" * 3000
        # Refused, the connection closes (a served one would stay open: a timeout here).
        answer, _ = await exchange(served, first + second + b"\r\n\r\n")
        assert answer.count(b"HTTP/1.1 200") <= 1


async def test_too_many_header_fields_is_431() -> None:
    async with serving(max_headers=10) as served:
        fields = b"".join(b"X-%d: 1\r\n" % i for i in range(11))
        answer, _ = await exchange(served, b"GET / HTTP/1.1\r\n" + fields + b"\r\n")
        assert status(answer) == 431
        assert b"too many request headers" in answer


async def test_a_head_within_the_limits_is_served() -> None:
    async with serving(max_header_bytes=4096, max_headers=10) as served:
        fields = b"".join(b"X-%d: 1\r\n" % i for i in range(9))
        answer, _ = await exchange(
            served, b"GET / HTTP/1.1\r\n" + fields + b"Connection: close\r\n\r\n"
        )
        assert status(answer) == 200


async def test_a_slow_head_gets_408_after_the_header_timeout() -> None:
    async with serving(header_timeout_s=0.2) as served:
        answer, took = await exchange(served, b"GET / HTTP/1.1\r\nHost: x\r\n")
        assert status(answer) == 408
        assert took >= 0.2


async def test_a_silent_connection_is_closed_after_the_header_timeout() -> None:
    async with serving(header_timeout_s=0.2) as served:
        answer, took = await exchange(served, b"")
        assert answer == b""
        assert took >= 0.2


async def test_a_slow_body_gets_408_and_the_app_sees_a_disconnect() -> None:
    async with serving(body_timeout_s=0.2) as served:
        head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
        answer, took = await exchange(served, head + b"only ten b")
        assert status(answer) == 408
        assert took >= 0.2
        await asyncio.wait_for(served.app.disconnected.wait(), 5)


async def test_an_idle_keepalive_connection_is_closed() -> None:
    async with serving(keepalive_timeout_s=0.2, header_timeout_s=30) as served:
        answer, took = await exchange(served, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status(answer) == 200
        assert 0.2 <= took < 5


async def test_between_requests_the_keepalive_timeout_applies_not_the_header_timeout() -> None:
    async with serving(keepalive_timeout_s=0.6, header_timeout_s=0.2) as served:
        answer, took = await exchange(served, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status(answer) == 200
        assert took >= 0.6


async def test_a_connection_past_the_limit_gets_503() -> None:
    async with serving(max_connections=2) as served:
        held = [await served.connect() for _ in range(2)]
        reader, writer = await served.connect()
        answer = await asyncio.wait_for(reader.read(), 5)
        assert status(answer) == 503
        assert b"retry-after: 1" in answer
        for _, w in held:
            w.close()
        writer.close()


async def test_a_websocket_handshake_line_past_8_kib_is_431() -> None:
    async with serving() as served:
        target = b"/ws?" + b"a" * 9000
        answer, _ = await exchange(
            served, b"GET " + target + b" HTTP/1.1\r\n" + WS_HEADERS + b"\r\n"
        )
        assert status(answer) == 431


async def test_a_websocket_handshake_within_bounds_is_answered() -> None:
    async with serving() as served:
        reader, writer = await served.connect()
        writer.write(b"GET /ws HTTP/1.1\r\n" + WS_HEADERS + b"\r\n")
        line = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        assert status(line) == 101


@pytest.mark.parametrize("draining", [False, True])
async def test_while_draining_answers_close_the_connection(draining: bool) -> None:
    async with serving() as served:
        served.draining[0] = draining
        reader, writer = await served.connect()
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.close()
        assert (b"connection: close" in head) is draining
