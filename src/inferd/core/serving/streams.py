"""One ordered stream: the rules every long-lived stream (WebSocket, gRPC bidi) follows.

Contract:
- The adapter gives a ``receive`` (the next message and its size in bytes; None once the
  client has finished sending; :class:`ClientGone` when it left), a ``serve`` (a message's
  answers: one, or several for a streaming model) and a ``fail`` (the answer for a message
  that could not be served). It sends what :meth:`OrderedStream.answers` yields, then reads
  :attr:`OrderedStream.end` to know why the stream ended.
- Every message read gets its answers, in the order the messages came in; a message that
  fails is answered by ``fail`` and the stream goes on.
- Up to ``max_in_flight`` messages are served at once; while that many are unanswered the
  stream stops reading, which pushes back on the client. A message's answers wait in a
  buffer of ``max_buffered`` while earlier messages are sent; a full buffer stops its
  producer (a streaming model's generator waits).
- Reading ends on the first of: the client finished, an idle timeout (no message and
  nothing pending), a message over the size limit, a client past its message rate, or
  shutdown (:meth:`StreamRegistry.close_all`). The answers owed are sent first, unless the
  client is gone; then everything still running is cancelled.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, Final, Generic, TypeVar

from inferd.settings import Settings

In = TypeVar("In")
Out = TypeVar("Out")


class ClientGone(Exception):
    """Raised by a ``receive`` when the client has left: nothing more can be sent."""


class End(enum.Enum):
    """Why a stream stopped reading."""

    CLIENT_DONE = "the client finished sending"
    CLIENT_GONE = "the client left"
    IDLE = "idle timeout"
    TOO_LARGE = "message too large"
    RATE_LIMITED = "message rate limit exceeded"
    SHUTDOWN = "server shutting down"


@dataclasses.dataclass(frozen=True, slots=True)
class StreamLimits:
    max_in_flight: int
    idle_timeout_s: float
    max_messages_per_second: float
    max_message_bytes: int
    max_buffered: int

    @classmethod
    def of(cls, settings: Settings) -> StreamLimits:
        """The ``stream`` section, and the request size limit of ``safeguards``."""
        stream = settings.stream
        return cls(
            max_in_flight=stream.max_in_flight,
            idle_timeout_s=stream.idle_timeout_s,
            max_messages_per_second=stream.max_messages_per_second,
            max_message_bytes=settings.safeguards.max_request_bytes,
            max_buffered=stream.max_buffered_responses,
        )


class TokenBucket:
    """``rate`` tokens a second, holding at most a second's worth (at least one).

    One per stream, on the loop's clock. Not the ``limits`` library that keeps the rate
    limit per principal (gateway/ratelimit.py), because it would change what the setting
    means and cost the stream path more: ``stream.max_messages_per_second`` is a float
    (0.5 is one message every two seconds) and its windows hold a whole number of hits;
    they count on the wall clock (``time.time``), which steps, where a stream's age is
    monotonic; its in-process storage is shared and would need the stream's key cleared
    when it ends; and a hit there costs 2-5 us (fixed or moving window) against 0.25 us
    for :meth:`take`. Every message still takes a hit from its principal's budget there.
    """

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        self._rate = rate
        self._capacity = max(1.0, rate)
        self._tokens = self._capacity
        self._clock = clock
        self._last = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class StreamRegistry:
    """The open streams of one transport, closed together on shutdown."""

    def __init__(self) -> None:
        self.closing = False
        self._open: set[OrderedStream[Any, Any]] = set()

    def add(self, stream: OrderedStream[In, Out]) -> None:
        self._open.add(stream)

    def discard(self, stream: OrderedStream[In, Out]) -> None:
        self._open.discard(stream)

    async def close_all(self, timeout: float) -> None:
        """Stop reading every stream; wait at most ``timeout`` seconds for them to send
        what they owe. Streams opened from now on end at once with ``End.SHUTDOWN``."""
        self.closing = True
        streams = list(self._open)
        for stream in streams:
            stream.interrupt()
        if streams:
            await asyncio.wait([s.finished for s in streams], timeout=timeout)


_DONE: Final = object()  # the end of one message's answers


class _Job(Generic[In, Out]):
    """One message: its answers, produced ahead into a buffer of ``buffered``."""

    def __init__(
        self, seq: int, message: In, stream: OrderedStream[In, Out], buffered: int
    ) -> None:
        self.buffer: asyncio.Queue[object] = asyncio.Queue()
        self.space = asyncio.Semaphore(buffered)
        self.task = asyncio.ensure_future(self._produce(seq, message, stream))
        # However the task ends (even cancelled before it started), the answers end.
        self.task.add_done_callback(lambda _: self.buffer.put_nowait(_DONE))

    async def _produce(self, seq: int, message: In, stream: OrderedStream[In, Out]) -> None:
        try:
            async for answer in stream.serve(seq, message):
                await self.space.acquire()
                self.buffer.put_nowait(answer)
        except Exception as exc:
            self.buffer.put_nowait(stream.fail(seq, message, exc))


class OrderedStream(Generic[In, Out]):
    """One stream's reader, window and ordered answers (see the module's contract)."""

    def __init__(
        self,
        limits: StreamLimits,
        receive: Callable[[], Awaitable[tuple[In, int] | None]],
        serve: Callable[[int, In], AsyncIterator[Out]],
        fail: Callable[[int, In, Exception], Out],
        registry: StreamRegistry | None = None,
    ) -> None:
        self.limits = limits
        self.receive = receive
        self.serve = serve
        self.fail = fail
        self.registry = registry or StreamRegistry()
        self.end: End | None = None
        self.seq = 0
        self._loop = asyncio.get_running_loop()
        self.finished: asyncio.Future[None] = self._loop.create_future()
        self._slots = asyncio.Semaphore(limits.max_in_flight)
        self._jobs: asyncio.Queue[_Job[In, Out] | None] = asyncio.Queue()
        self._bucket = TokenBucket(limits.max_messages_per_second, self._loop.time)
        self._pending = 0
        self._last_active = self._loop.time()
        self._reader: asyncio.Task[None] | None = None
        self._stopped_by: End | None = None  # why the reader was cancelled
        self._idle_timer: asyncio.TimerHandle | None = None

    def interrupt(self) -> None:
        """Stop reading (shutdown): the answers owed are still sent."""
        self._stop_reading(End.SHUTDOWN)

    def _stop_reading(self, why: End) -> None:
        if self._stopped_by is None:
            self._stopped_by = why
            if self._reader is not None:
                self._reader.cancel()

    def _watch_idle(self) -> None:
        """(Re)arm the idle timer for when the stream would have been idle long enough."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        due = self._last_active + self.limits.idle_timeout_s
        self._idle_timer = self._loop.call_at(due, self._on_idle_timer)

    def _on_idle_timer(self) -> None:
        self._idle_timer = None
        if self._pending:
            return  # re-armed when the last pending message is answered
        if self._loop.time() >= self._last_active + self.limits.idle_timeout_s:
            self._stop_reading(End.IDLE)
        else:
            self._watch_idle()

    async def answers(self) -> AsyncGenerator[Out, None]:
        """Every answer, in order; ends once reading ended and the answers owed went out.
        Close it (``contextlib.aclosing``) when a send fails: what runs is cancelled."""
        jobs: list[_Job[In, Out]] = []
        if self.registry.closing:
            self.end = End.SHUTDOWN
            self.finished.set_result(None)
            return
        self.registry.add(self)
        self._reader = asyncio.ensure_future(self._read(jobs))
        self._watch_idle()
        try:
            while (job := await self._jobs.get()) is not None:
                while (answer := await job.buffer.get()) is not _DONE:
                    if self.end is End.CLIENT_GONE:
                        return
                    job.space.release()
                    yield answer  # type: ignore[misc]
                    self._last_active = self._loop.time()
                jobs.remove(job)
                self._pending -= 1
                self._last_active = self._loop.time()
                if not self._pending:
                    self._watch_idle()
                self._slots.release()
        finally:
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            self._reader.cancel()
            for job in jobs:
                job.task.cancel()
            await asyncio.gather(self._reader, *(j.task for j in jobs), return_exceptions=True)
            if self.end is None:
                self.end = End.CLIENT_GONE
            self.registry.discard(self)
            self.finished.set_result(None)

    # -- reading --------------------------------------------------------------------------

    async def _read(self, jobs: list[_Job[In, Out]]) -> None:
        """Take messages until reading must end; a slot is taken before each read, so a
        message once read is always served. The idle timer and shutdown cancel it."""
        try:
            self.end = await self._read_until_end(jobs)
        except asyncio.CancelledError:
            if self._stopped_by is None:
                raise
            self.end = self._stopped_by
        except ClientGone:
            self.end = End.CLIENT_GONE
            for job in jobs:
                job.task.cancel()
        self._jobs.put_nowait(None)

    async def _read_until_end(self, jobs: list[_Job[In, Out]]) -> End:
        limits = self.limits
        while True:
            await self._slots.acquire()
            received = await self.receive()
            if received is None:
                return End.CLIENT_DONE
            message, size = received
            if size > limits.max_message_bytes:
                return End.TOO_LARGE
            if not self._bucket.take():
                return End.RATE_LIMITED
            self.seq += 1
            self._pending += 1
            self._last_active = self._loop.time()
            job = _Job(self.seq, message, self, limits.max_buffered)
            jobs.append(job)
            self._jobs.put_nowait(job)
