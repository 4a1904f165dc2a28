"""Routing keys: what keeps a caller on one version of a traffic split.

The front (HTTP, WebSocket) and the gRPC edge's wrapper read the ``routing.key_header``
header or metadata (``X-Routing-Key`` by default); without it, the caller's API key name
is the routing key. It is held in a context variable for the adapters, which put it on
the request (:attr:`inferd.core.messages.InferRequest.routing_key`); the router checks its
length (:mod:`inferd.core.traffic.router`).
"""

from __future__ import annotations

import contextvars
from typing import Final

current: Final[contextvars.ContextVar[str | None]] = contextvars.ContextVar(
    "inferd_routing_key", default=None
)


def choose(given: str | None, principal: str | None) -> str | None:
    """The routing key of a call: the one it sent (when not empty), else its key name."""
    return given or principal
