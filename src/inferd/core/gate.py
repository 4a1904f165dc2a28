"""The data plane's gate: open, or closed by a draining server; and the work in flight."""

from __future__ import annotations

import asyncio


class Gate:
    """Whether the data plane takes new work, and the work it has taken and not finished.

    The data plane counts; the server's lifecycle closes the gate (``draining``) and waits
    for :attr:`idle`."""

    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()
