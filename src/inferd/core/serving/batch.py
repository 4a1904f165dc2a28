"""What a batch is made of: a queued request, the key that says which requests may share
a batch, the joining of their rows, and what a batcher reports as it works.

The batcher (:mod:`inferd.core.serving.batcher`) holds the contract; this module has its
vocabulary only.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any, Final, Protocol

import numpy as np

from inferd.errors import DeadlineExceeded

Arrays = dict[str, np.ndarray[Any, Any]]
RunFn = Callable[[Arrays], Arrays]
BatchKey = tuple[tuple[str, str, tuple[int, ...]], ...]
#: Seconds spent joining the rows, running the model and checking its outputs.
#: A batch's times, in seconds: joining its rows, the model call, checking the outputs;
#: then what the call cost the version's inline rule (core/serving/execution.py).
Timings = tuple[float, float, float, float]
NO_TIME: Final[Timings] = (0.0, 0.0, 0.0, 0.0)


class BatchObserver(Protocol):
    def depth(self, queued: int) -> None: ...
    def waited(self, seconds: float) -> None: ...
    def executed(self, rows: int, seconds: float) -> None: ...


class Unobserved:
    def depth(self, queued: int) -> None:
        pass

    def waited(self, seconds: float) -> None:
        pass

    def executed(self, rows: int, seconds: float) -> None:
        pass


@dataclasses.dataclass(slots=True)
class Pending:
    """One request in a batcher's queue."""

    inputs: Arrays
    rows: int
    key: BatchKey
    future: asyncio.Future[Arrays]
    enqueued: float
    deadline: float | None
    #: When the transport first saw it (a latency target's batcher reads it).
    arrived: float | None = None
    queued: bool = True  # counted in the queue's length until it leaves or is answered


def expire(future: asyncio.Future[Arrays]) -> None:
    if not future.done():
        future.set_exception(DeadlineExceeded("the request's deadline passed before it finished"))


def joined(batch: list[Pending]) -> Callable[[], Arrays]:
    """A batch's inputs, its requests' rows joined (when called: in the instance thread)."""

    def join() -> Arrays:
        if len(batch) == 1:
            return batch[0].inputs
        return {name: np.concatenate([p.inputs[name] for p in batch]) for name in batch[0].inputs}

    return join


def batch_key(inputs: Arrays, batching: bool) -> BatchKey:
    """Requests share a batch only when their keys are equal: the same inputs, dtypes and
    non-batch shapes (whole shapes for a model that does not batch)."""
    if len(inputs) == 1:  # the usual request: one input
        for name, array in inputs.items():
            return ((name, array.dtype.str, array.shape[1:] if batching else array.shape),)
    return tuple(
        (name, array.dtype.str, array.shape[1:] if batching else array.shape)
        for name, array in inputs.items()
    )
