"""ASGI middleware: per-client rate limiting in front of the inference routes."""

from __future__ import annotations

from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from inferd.errors import ResourceExhausted
from inferd.gateway.ratelimit import RateLimiter
from inferd.http.errors import error_response
from inferd.settings import RateLimitSettings

#: Paths that are never rate limited: probes and scrapes must get through.
EXEMPT: Final = frozenset({"/healthz", "/ready", "/metrics", "/v2/health/live", "/v2/health/ready"})


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, settings: RateLimitSettings) -> None:
        self.app = app
        self.limiter = RateLimiter(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope["path"] not in EXEMPT:
            client = scope.get("client")
            try:
                self.limiter.check(client[0] if client else "unknown")
            except ResourceExhausted as exc:
                if scope["type"] == "http":
                    await error_response(exc)(scope, receive, send)
                else:
                    await send({"type": "websocket.close", "code": 1008})
                return
        await self.app(scope, receive, send)
