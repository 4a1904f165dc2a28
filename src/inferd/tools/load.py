"""The load of ``inferd bench``: N connections (HTTP) or N callers (gRPC), each sending its
next request as soon as the previous one is answered (a closed loop, as wrk does).

HTTP is driven by asyncio protocols writing one pre-encoded request (the body made once by
``inferd.client``'s codec) and reading just the status line and ``Content-Length`` of each
answer, so that the generator costs little next to the server it measures
(``benchmarks/RESULTS.md`` compares it with wrk). gRPC goes through grpc.aio with one
pre-built message.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import time
from collections.abc import Callable
from typing import Any, Final, cast
from urllib.parse import urlsplit

import grpc

from inferd.client.grpc import infer_request
from inferd.grpc.protos import grpc_service_pb2_grpc as pb_grpc

#: Latencies kept per step; past this, answers are counted but their latency is not kept.
MAX_SAMPLES: Final = 5_000_000


@dataclasses.dataclass(slots=True)
class Tally:
    """What a step has seen so far: latencies (seconds) of answers, errors by kind."""

    latencies: list[float] = dataclasses.field(default_factory=list)
    errors: dict[str, int] = dataclasses.field(default_factory=dict)
    answered: int = 0

    def ok(self, seconds: float) -> None:
        self.answered += 1
        if len(self.latencies) < MAX_SAMPLES:
            self.latencies.append(seconds)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


@dataclasses.dataclass(frozen=True, slots=True)
class HttpRequest:
    """One request, encoded once: ``raw`` is what goes on the wire each time."""

    host: str
    port: int
    tls: ssl.SSLContext | None
    raw: bytes

    @classmethod
    def of(
        cls,
        url: str,
        path: str,
        body: bytes,
        headers: dict[str, str],
        tls: ssl.SSLContext | None = None,
    ) -> HttpRequest:
        parts = urlsplit(url)
        secure = parts.scheme == "https"
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if secure else 80)
        lines = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        context = (tls or ssl.create_default_context()) if secure else None
        return cls(host, port, context, head + body)


class _Connection(asyncio.Protocol):
    """One keep-alive connection: send, read the answer, send again while ``running()``."""

    def __init__(self, request: bytes, tally: Tally, running: Callable[[], bool]) -> None:
        self._request = request
        self._tally = tally
        self._running = running
        self._buffer = bytearray()
        self._sent = 0.0
        self._transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._send()

    def _send(self) -> None:
        assert self._transport is not None
        self._sent = time.perf_counter()
        self._transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = _content_length(buffer, end)
            if length is None:
                self._tally.error("no content-length")
                self._close()
                return
            if len(buffer) < end + 4 + length:
                return
            status = buffer[9:12]
            if status == b"200":
                self._tally.ok(time.perf_counter() - self._sent)
            else:
                self._tally.error("HTTP " + status.decode("latin-1"))
            del buffer[: end + 4 + length]
            if not self._running():
                self._close()
                return
            self._send()

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._running():
            self._tally.error("connection lost")
        if not self.closed.done():
            self.closed.set_result(None)


def _content_length(buffer: bytearray, end: int) -> int | None:
    head = bytes(buffer[:end]).lower()
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        return None
    line_end = head.find(b"\r\n", at + 2)
    return int(head[at + 17 : line_end if line_end >= 0 else end])


async def http_load(request: HttpRequest, connections: int, seconds: float, tally: Tally) -> None:
    """``connections`` connections sending ``request`` for ``seconds``."""
    loop = asyncio.get_running_loop()
    stop = loop.time() + seconds

    def running() -> bool:
        return loop.time() < stop

    async def one() -> None:
        while running():
            try:
                _, protocol = await loop.create_connection(
                    lambda: _Connection(request.raw, tally, running),
                    request.host,
                    request.port,
                    ssl=request.tls,
                )
            except OSError as exc:
                tally.error(f"connect: {exc.__class__.__name__}")
                await asyncio.sleep(0.1)
                continue
            await protocol.closed

    await asyncio.gather(*(one() for _ in range(connections)))


async def grpc_load(
    target: str,
    model: str,
    version: str | None,
    inputs: dict[str, Any],
    metadata: list[tuple[str, str]],
    callers: int,
    seconds: float,
    tally: Tally,
    credentials: grpc.ChannelCredentials | None = None,
) -> None:
    """``callers`` concurrent ModelInfer loops over one channel for ``seconds``."""
    message = infer_request(model, inputs, version)
    channel = (
        grpc.aio.secure_channel(target, credentials)
        if credentials is not None
        else grpc.aio.insecure_channel(target)
    )
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    loop = asyncio.get_running_loop()
    stop = loop.time() + seconds

    async def one() -> None:
        while loop.time() < stop:
            sent = time.perf_counter()
            try:
                await stub.ModelInfer(message, metadata=metadata)
            except grpc.aio.AioRpcError as exc:
                tally.error(exc.code().name)
                continue
            tally.ok(time.perf_counter() - sent)

    try:
        await asyncio.gather(*(one() for _ in range(callers)))
    finally:
        await channel.close()
