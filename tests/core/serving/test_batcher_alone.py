"""A lone request runs at once (the batcher's contract): no queue, no future, no loop turn.

``submit(..., alone=True)`` is what the HTTP direct path says when it read no other request
that is still on its way to a queue. The request runs at once only on a version that may
run inline now, with nothing queued; everything else queues as before.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any

import pytest

from inferd.core.serving.batcher import Arrays, Batcher
from inferd.core.serving.stats import VersionStats
from inferd.errors import InternalError
from tests.core.serving.test_batcher import Threads, make, rows


def at_once(coroutine: Coroutine[Any, Any, Arrays]) -> Arrays:
    """The coroutine's result when it finishes without waiting for anything; fails when
    it would wait (for a queue, a loop turn, a thread)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: Arrays = done.value
        return result
    coroutine.close()
    raise AssertionError("the request waited instead of running at once")


def cheap(model: Any, stats: VersionStats | None = None) -> Batcher:
    batcher = Batcher(
        model,
        stats=stats or VersionStats("m", "1"),
        max_batch_size=8,
        inline_max_compute_s=0.05,
    )
    batcher.start()
    batcher.seed_call_cost(0.0001)  # measured cheap, as at load
    return batcher


async def test_a_lone_request_on_an_idle_cheap_version_runs_at_once_on_the_loop() -> None:
    model, stats = Threads(), VersionStats("m", "1")
    batcher = cheap(model, stats)
    result = at_once(batcher.submit(rows(1, 3.0), alone=True))
    assert result["y"].tolist() == [[6.0, 6.0]]
    assert model.threads == [threading.current_thread()]
    assert stats.queue.count == 1 and stats.queue.ns == 0  # it never waited
    assert list(stats.batches) == [1] and stats.execution_count == 1  # one call of one row
    await batcher.close()


async def test_a_request_not_alone_queues_as_before() -> None:
    batcher = cheap(Threads())
    with pytest.raises(AssertionError, match="waited"):
        at_once(batcher.submit(rows(1)))
    await batcher.close()


async def test_a_lone_request_behind_a_queued_one_shares_its_batch() -> None:
    """Requests read in one turn: the first is not alone and queues; the last is alone by
    the count, yet finds the first queued, so the two run as one call."""
    model = Threads()
    batcher = cheap(model)
    first = asyncio.ensure_future(batcher.submit(rows(1, 1.0)))
    await asyncio.sleep(0)  # queued; its dispatch is due in the next turn
    assert batcher.queued == 1
    last = await batcher.submit(rows(1, 2.0), alone=True)
    assert (await first)["y"][0, 0] == 2.0 and last["y"][0, 0] == 4.0
    assert model.rows == [2]
    await batcher.close()


async def test_a_lone_request_waits_for_a_version_not_measured_cheap() -> None:
    # Not yet measured (the first calls are timed in an instance thread), then slow.
    for seed in (None, 0.01):
        model = Threads()
        batcher = make(model, inline_max_compute_s=0.001)
        if seed is not None:
            batcher.seed_call_cost(seed)
        with pytest.raises(AssertionError, match="waited"):
            at_once(batcher.submit(rows(1), alone=True))
        await batcher.submit(rows(1), alone=True)
        assert threading.current_thread() not in model.threads
        await batcher.close()


async def test_queue_delay_and_inline_off_mean_no_lone_runs() -> None:
    for options in ({}, {"inline_max_compute_s": 0.05, "max_queue_delay_s": 0.001}):
        model = Threads()
        batcher = make(model, **options)
        batcher.seed_call_cost(0.0001)
        with pytest.raises(AssertionError, match="waited"):
            at_once(batcher.submit(rows(1), alone=True))
        await batcher.close()


async def test_a_lone_call_that_fails_raises_an_internal_error_caused_by_the_model() -> None:
    def broken(inputs: Arrays) -> Arrays:
        raise ValueError("broken")

    stats = VersionStats("m", "1")
    batcher = cheap(broken, stats)
    with pytest.raises(InternalError, match="broken") as failure:
        at_once(batcher.submit(rows(1), alone=True))
    assert isinstance(failure.value.__cause__, ValueError)  # the model's traceback, logged
    assert stats.batches == {}  # no call counted: none finished
    await batcher.close()


async def test_a_closing_batcher_refuses_a_lone_request() -> None:
    batcher = cheap(Threads())
    await batcher.close()
    with pytest.raises(Exception, match="shutting down"):
        at_once(batcher.submit(rows(1), alone=True))
