"""Streaming (decoupled) model versions: a generator per request, run off the event loop.

Contract:
- ``run`` yields the partial outputs a model's generator yields for one request, as they
  come. Requests are not batched; up to ``instances`` generators run at once, each in a
  thread of its own; the rest wait their turn (within their deadline).
- The generator is never more than ``buffered`` partials ahead of the caller: when that
  many are waiting it is not advanced (back-pressure from a slow reader reaches the model).
- When the caller stops (it leaves, is cancelled, or its deadline passes) the generator is
  closed before its next step: its ``finally`` blocks run and it takes no more steps.
- A generator that raises fails that request and no other; the error reaches the caller
  after the partials yielded before it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Final

import numpy as np

from inferd.errors import DeadlineExceeded, InferdError, InternalError, Unavailable

Arrays = dict[str, np.ndarray[Any, Any]]
StreamFn = Callable[[Arrays], Iterator[Any]]

_END: Final = object()


class _Channel:
    """From one producer thread to the loop, with ``buffered`` credits."""

    def __init__(self, loop: asyncio.AbstractEventLoop, buffered: int) -> None:
        self.loop = loop
        self.items: asyncio.Queue[object] = asyncio.Queue()
        self.credits = threading.Semaphore(buffered)
        self.stopped = False

    # -- producer thread ------------------------------------------------------------------

    def wait_for_room(self) -> bool:
        """Block until the consumer has room for one more partial; False once it stopped."""
        self.credits.acquire()
        return not self.stopped

    def put(self, item: object) -> None:
        try:
            self.loop.call_soon_threadsafe(self.items.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            self.stopped = True

    # -- consumer (the loop) --------------------------------------------------------------

    async def get(self, deadline: float) -> object:
        """The next item; DeadlineExceeded at ``deadline`` (``time.monotonic()``)."""
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
                item = await self.items.get()
        except TimeoutError:
            raise DeadlineExceeded("the request's deadline passed while it was streaming") from None
        self.credits.release()
        return item

    def stop(self) -> None:
        self.stopped = True
        self.credits.release()  # wake a producer waiting for room


class GeneratorRunner:
    """Runs one streaming model version's generators (see the module's contract)."""

    def __init__(
        self,
        stream: StreamFn,
        *,
        name: str,
        instances: int = 1,
        prepare_thread: Callable[[], None] | None = None,
    ) -> None:
        self._stream = stream
        self._name = name
        self._slots = asyncio.Semaphore(instances)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            instances, thread_name_prefix=f"stream-{name}", initializer=prepare_thread
        )
        self._running = 0
        self._channels: set[_Channel] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False

    async def run(
        self, inputs: Arrays, deadline: float, buffered: int = 8
    ) -> AsyncIterator[Arrays]:
        """The partial outputs of one request, as the model yields them; the generator
        runs at most ``buffered`` partials ahead of the caller."""
        if self._closing:
            raise Unavailable(f"model '{self._name}' is shutting down")
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
                await self._slots.acquire()
        except TimeoutError:
            raise DeadlineExceeded("the request's deadline passed while it waited") from None
        channel = _Channel(asyncio.get_running_loop(), buffered)
        self._channels.add(channel)
        self._running += 1
        self._idle.clear()
        done = asyncio.get_running_loop().run_in_executor(
            self._executor, self._produce, inputs, channel
        )
        done.add_done_callback(self._release)
        try:
            while (item := await channel.get(deadline)) is not _END:
                if isinstance(item, BaseException):
                    raise _failure(self._name, item)
                yield item  # type: ignore[misc]
        finally:
            channel.stop()
            self._channels.discard(channel)

    def _release(self, done: asyncio.Future[None]) -> None:
        self._slots.release()
        self._running -= 1
        if self._running == 0:
            self._idle.set()

    def _produce(self, inputs: Arrays, channel: _Channel) -> None:
        """In a worker thread: advance the generator while the consumer has room."""
        try:
            generator = self._stream(inputs)
        except BaseException as exc:  # a model's SystemExit must not take the worker
            channel.put(exc)
            return
        try:
            while channel.wait_for_room():
                try:
                    item = next(generator)
                except StopIteration:
                    channel.put(_END)
                    return
                channel.put(item)
        except BaseException as exc:
            channel.put(exc)
        finally:
            with contextlib.suppress(Exception):
                generator.close()  # type: ignore[attr-defined]

    async def close(self, grace_s: float | None = None) -> bool:
        """Refuse new requests, stop every running generator (before its next step), wait
        at most ``grace_s`` for them to end, stop the threads. False when a generator was
        still in a step at the end of the grace (its thread is left behind)."""
        self._closing = True
        for channel in list(self._channels):
            channel.stop()
        try:
            async with asyncio.timeout(grace_s):
                await self._idle.wait()
        except TimeoutError:
            self._executor.shutdown(wait=False)
            return False
        self._executor.shutdown(wait=False)
        return True


def _failure(name: str, exc: BaseException) -> InferdError:
    if isinstance(exc, InferdError):
        return exc
    return InternalError(f"model '{name}' failed: {type(exc).__name__}: {exc}")
