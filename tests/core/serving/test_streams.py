"""The ordered stream helper, in-process: a fake client feeding messages from a queue."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from inferd.core.serving.streams import (
    ClientGone,
    End,
    OrderedStream,
    StreamLimits,
    StreamRegistry,
    TokenBucket,
)

LIMITS = StreamLimits(
    max_in_flight=4,
    idle_timeout_s=60.0,
    max_messages_per_second=1000.0,
    max_message_bytes=100,
    max_buffered=2,
)
GONE = object()


class Client:
    """Messages to send (None: done sending; GONE: leave), answers received."""

    def __init__(self) -> None:
        self.outbox: asyncio.Queue[Any] = asyncio.Queue()
        self.received: list[Any] = []

    async def receive(self) -> tuple[Any, int] | None:
        message = await self.outbox.get()
        if message is GONE:
            raise ClientGone
        return None if message is None else (message, len(str(message)))

    def send(self, *messages: Any) -> None:
        for message in messages:
            self.outbox.put_nowait(message)


def failed(seq: int, message: Any, exc: Exception) -> str:
    return f"{seq}:error:{exc}"


async def echo(seq: int, message: Any) -> AsyncIterator[str]:
    if message == "bad":
        raise ValueError("bad message")
    yield f"{seq}:{message}"


async def run(
    client: Client,
    serve: Any = echo,
    limits: StreamLimits = LIMITS,
    registry: StreamRegistry | None = None,
) -> OrderedStream[Any, str]:
    stream = OrderedStream(limits, client.receive, serve, failed, registry)
    async for answer in stream.answers():
        client.received.append(answer)
    return stream


async def settle() -> None:
    """Let every task on the loop run until each waits on something outside it."""
    for _ in range(50):
        await asyncio.sleep(0)


async def test_answers_in_order_and_a_failure_is_answered_and_the_stream_goes_on() -> None:
    client = Client()

    async def slow_first(seq: int, message: Any) -> AsyncIterator[str]:
        if seq == 1:
            await asyncio.sleep(0.05)  # finishes after the later ones
        async for answer in echo(seq, message):
            yield answer

    client.send("a", "bad", "c", None)
    stream = await run(client, slow_first)
    assert client.received == ["1:a", "2:error:bad message", "3:c"]
    assert stream.end is End.CLIENT_DONE


async def test_at_most_max_in_flight_messages_are_served_at_once() -> None:
    client = Client()
    release = asyncio.Event()
    running = 0

    async def held(seq: int, message: Any) -> AsyncIterator[str]:
        nonlocal running
        running += 1
        await release.wait()
        yield f"{seq}"

    client.send(*range(10), None)
    task = asyncio.ensure_future(run(client, held))
    await settle()
    assert running == LIMITS.max_in_flight
    assert client.outbox.qsize() == 11 - LIMITS.max_in_flight  # the rest is not read
    release.set()
    await task
    assert client.received == [str(n) for n in range(1, 11)]


async def test_a_message_with_several_answers_waits_in_a_bounded_buffer() -> None:
    client = Client()
    produced: dict[int, int] = {1: 0, 2: 0}
    first_done = asyncio.Event()

    async def many(seq: int, message: Any) -> AsyncIterator[str]:
        if seq == 1:
            await first_done.wait()
        for n in range(100):
            produced[seq] += 1
            yield f"{seq}.{n}"

    client.send("a", "b", None)
    task = asyncio.ensure_future(run(client, many))
    await settle()
    # The second message's answers wait behind the first's: its producer is stopped once
    # the buffer is full (one more answer is in hand, waiting for room).
    assert produced[2] == LIMITS.max_buffered + 1
    first_done.set()
    await task
    assert client.received == [f"1.{n}" for n in range(100)] + [f"2.{n}" for n in range(100)]


async def test_idle_stream_ends_after_its_answers() -> None:
    client = Client()
    client.send("a")
    limits = StreamLimits(4, 0.1, 1000.0, 100, 2)
    stream = await asyncio.wait_for(run(client, limits=limits), 10)
    assert client.received == ["1:a"]
    assert stream.end is End.IDLE


async def test_a_pending_answer_keeps_the_stream_from_idling() -> None:
    client = Client()

    async def slow(seq: int, message: Any) -> AsyncIterator[str]:
        await asyncio.sleep(0.3)  # three idle timeouts
        yield "done"

    client.send("a", None)
    stream = await asyncio.wait_for(run(client, slow, StreamLimits(4, 0.1, 1000.0, 100, 2)), 10)
    assert client.received == ["done"]
    assert stream.end is End.CLIENT_DONE


async def test_past_the_message_rate_the_stream_ends_after_the_answers_owed() -> None:
    client = Client()
    client.send(*"abcdefgh")
    stream = await run(client, limits=StreamLimits(16, 60.0, 3.0, 100, 2))
    assert client.received == ["1:a", "2:b", "3:c"]  # a burst of a second's worth
    assert stream.end is End.RATE_LIMITED


async def test_a_message_over_the_size_limit_ends_the_stream_after_the_answers_owed() -> None:
    client = Client()
    client.send("a", "x" * 101, "c")
    stream = await run(client)
    assert client.received == ["1:a"]
    assert stream.end is End.TOO_LARGE


async def test_shutdown_sends_what_is_owed_and_refuses_new_streams() -> None:
    client = Client()
    release = asyncio.Event()

    async def held(seq: int, message: Any) -> AsyncIterator[str]:
        await release.wait()
        yield f"{seq}"

    registry = StreamRegistry()
    client.send("a", "b")
    task = asyncio.ensure_future(run(client, held, registry=registry))
    await settle()
    closing = asyncio.ensure_future(registry.close_all(10))
    await settle()
    release.set()
    await closing
    stream = await task
    assert client.received == ["1", "2"]
    assert stream.end is End.SHUTDOWN
    late = Client()
    late.send("c")
    assert (await run(late, registry=registry)).end is End.SHUTDOWN
    assert late.received == []


async def test_a_client_that_leaves_cancels_what_runs_for_it() -> None:
    client = Client()
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever(seq: int, message: Any) -> AsyncIterator[str]:
        started.set()
        try:
            await asyncio.Event().wait()
            yield "never"
        except asyncio.CancelledError:
            cancelled.set()
            raise

    client.send("a")
    running = asyncio.ensure_future(run(client, forever))
    await started.wait()
    client.send(GONE)
    stream = await asyncio.wait_for(running, 10)
    assert cancelled.is_set()
    assert stream.end is End.CLIENT_GONE
    assert client.received == []


async def test_closing_the_answers_cancels_what_runs() -> None:
    client = Client()
    cancelled = asyncio.Event()

    async def forever(seq: int, message: Any) -> AsyncIterator[str]:
        yield "first"
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    client.send("a")
    stream = OrderedStream(LIMITS, client.receive, forever, failed)
    async with contextlib.aclosing(stream.answers()) as answers:
        async for answer in answers:
            assert answer == "first"
            break  # as an adapter does when a send fails
    assert cancelled.is_set()
    assert stream.end is End.CLIENT_GONE


@pytest.mark.parametrize(("rate", "burst"), [(0.5, 1), (3.0, 3), (10.0, 10)])
def test_token_bucket_allows_a_seconds_worth_then_the_rate(rate: float, burst: int) -> None:
    now = [0.0]
    bucket = TokenBucket(rate, lambda: now[0])
    assert [bucket.take() for _ in range(burst + 1)] == [True] * burst + [False]
    now[0] += 1 / rate
    assert bucket.take()
    assert not bucket.take()
