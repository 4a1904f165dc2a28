"""Reading request bodies under the size limit."""

from __future__ import annotations

from starlette.requests import Request

from inferd.gateway.limits import check_declared_length, read_limited


async def read_body(request: Request, limit: int) -> bytes:
    check_declared_length(request.headers.get("content-length"), limit)
    return await read_limited(request.stream(), limit)
