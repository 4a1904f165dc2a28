"""Request size limits: the declared length, then the body as it streams."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from inferd.errors import InvalidArgument, PayloadTooLarge
from inferd.gateway.limits import check_declared_length, read_limited


@pytest.mark.parametrize(
    ("declared", "expected"), [(None, None), ("0", 0), ("100", 100), ("007", 7)]
)
def test_declared_lengths_within_the_limit(declared: str | None, expected: int | None) -> None:
    assert check_declared_length(declared, 100) == expected


@pytest.mark.parametrize(
    ("declared", "error", "message"),
    [
        ("101", PayloadTooLarge, "101 bytes exceeds the 100-byte limit"),
        ("ten", InvalidArgument, "is not a number"),
        ("-1", InvalidArgument, "is negative"),
    ],
)
def test_declared_lengths_refused(declared: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        check_declared_length(declared, 100)


async def chunks(*parts: bytes, after: list[int] | None = None) -> AsyncIterator[bytes]:
    for part in parts:
        if after is not None:
            after.append(len(part))
        yield part


async def test_a_streamed_body_is_joined() -> None:
    assert await read_limited(chunks(b"ab", b"", b"cd"), 4) == b"abcd"
    assert await read_limited(chunks(b"abcd"), 4) == b"abcd"


async def test_a_streamed_body_stops_at_the_chunk_that_passes_the_limit() -> None:
    read: list[int] = []
    with pytest.raises(PayloadTooLarge, match="exceeds the 4-byte limit"):
        await read_limited(chunks(b"ab", b"cde", b"never read", after=read), 4)
    assert read == [2, 3]
