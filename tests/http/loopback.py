"""An ASGI app served by uvicorn with inferd's HTTP protocol on a loopback port, in the
test's event loop (the protocol tests and the direct path's)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import uvicorn

from inferd.http.protocol import protocol_class
from inferd.settings import HttpLimits
from tests.conftest import until


@contextlib.asynccontextmanager
async def serve(
    app: Any, limits: HttpLimits, draining: Callable[[], bool], **config: Any
) -> AsyncIterator[int]:
    """Serve ``app`` until the block ends; yields the port."""
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            loop="none",
            http=protocol_class(limits, draining),
            lifespan="off",
            log_level="warning",
            **config,
        )
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await until(lambda: server.started, 10, "the server to start")
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await task
