"""Latency targets: a request taken from the queue too late for the goal is refused there."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator

import pytest

from inferd.core.serving.latency import TargetBatcher
from inferd.errors import Unavailable
from inferd.metrics import Metrics
from inferd.serving_metrics import TargetGauges
from tests.core.serving.test_latency import gated_batcher, row, teach


@contextlib.asynccontextmanager
async def taught(
    target_s: float, gauges: TargetGauges | None = None, *, held: bool = False
) -> AsyncIterator[tuple[TargetBatcher, threading.Event]]:
    """A started batcher taught c(b) = 30 ms + 2 ms per row, its model held at a gate
    (``held``) or running freely; closed (and the gate opened) after the test."""
    batcher, gate = gated_batcher(target_s, gauges)
    if not held:
        gate.set()
    batcher.start()
    teach(batcher)
    try:
        yield batcher, gate
    finally:
        gate.set()
        await batcher.close()


async def test_a_request_taken_too_late_for_the_goal_is_refused_and_counts_as_late() -> None:
    metrics = Metrics()
    gauges = TargetGauges(metrics.serving, "m", "1")
    async with taught(0.112, gauges, held=True) as (batcher, gate):  # the goal: 100.8 ms
        running = asyncio.ensure_future(batcher.submit(row()))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert batcher.running == 1
        # Both admitted (the prediction is within the budget); one arrived 90 ms ago (a
        # stall before the queue the prediction could not see): with its batch's 34 ms of
        # compute it would be answered past the goal.
        fresh = asyncio.ensure_future(batcher.submit(row()))
        stale = asyncio.ensure_future(batcher.submit(row(), None, time.monotonic() - 0.090))
        await asyncio.sleep(0)
        assert batcher.queued == 2
        judged, late = batcher.state()["answers"], batcher.state()["late"]
        gate.set()
        await running
        assert (await fresh)["x"].shape == (1, 2)
        with pytest.raises(Unavailable, match="past its latency target of 112 ms; retry later"):
            await stale
        state = batcher.state()
        assert state["refused"] == {"target": 0, "deadline": 0, "queue": 1}
        assert state["late"] == late + 1 and state["answers"] >= judged + 1
        assert state["factor"] < 1.0
        rendered = metrics.render().decode()
        assert 'inferd_early_refusals_total{model="m",reason="queue",version="1"} 1.0' in rendered


async def test_nothing_is_refused_at_the_queue_when_compute_alone_misses_the_goal() -> None:
    async with taught(0.112) as (batcher, _):
        stale = [
            asyncio.ensure_future(batcher.submit(row(), None, time.monotonic() - 0.5))
            for _ in range(2)
        ]
        await asyncio.sleep(0)
        assert batcher.queued == 2  # admitted; their batch is formed at the next turn
        # Now a batch measures 200 ms, past the 100.8 ms goal by itself: no request could
        # be on time, and refusing them at the queue would shut the model off for good.
        for _ in range(60):
            batcher.measured(1, 0.200)
            batcher.measured(2, 0.200)
        answers = await asyncio.gather(*stale)
        assert [a["x"].shape for a in answers] == [(1, 2)] * 2
        assert batcher.state()["refused"]["queue"] == 0


async def test_a_lone_request_on_an_idle_model_is_not_refused_at_the_queue() -> None:
    async with taught(0.112) as (batcher, _):
        answer = await batcher.submit(row(), None, time.monotonic() - 0.5)  # delays no one
        assert answer["x"].shape == (1, 2)
        assert batcher.state()["refused"]["queue"] == 0
