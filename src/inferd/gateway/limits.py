"""Request size limits, enforced while the body streams in."""

from __future__ import annotations

from collections.abc import AsyncIterator

from inferd.errors import InvalidArgument, PayloadTooLarge, clip


def check_declared_length(declared: str | None, limit: int) -> int | None:
    """Refuse an oversized body from its declared length, before reading any of it."""
    if declared is None:
        return None
    try:
        length = int(declared)
    except ValueError:
        raise InvalidArgument(f"Content-Length {clip(repr(declared))} is not a number") from None
    if length < 0:
        raise InvalidArgument(f"Content-Length {clip(repr(declared))} is negative")
    if length > limit:
        raise PayloadTooLarge(f"request body of {length} bytes exceeds the {limit}-byte limit")
    return length


async def read_limited(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """Join a streamed body, stopping as soon as it passes ``limit`` (chunked bodies too)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the {limit}-byte limit")
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)
