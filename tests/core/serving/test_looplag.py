"""The loop's lag: what a latency target plans for before a request's arrival."""

from __future__ import annotations

import asyncio
import time

import pytest

from inferd.core.serving.looplag import PERIOD_S, WEIGHT, LoopLag, probe
from tests.conftest import until


def test_samples_make_a_running_mean_and_mean_deviation() -> None:
    lag = LoopLag(closed_loop())
    lag.sample(0.010)
    assert lag.mean == pytest.approx(WEIGHT * 0.010)
    assert lag.deviation == pytest.approx(WEIGHT * (0.010 - lag.mean))
    for _ in range(1000):  # a steady 4 ms
        lag.sample(0.004)
    assert lag.mean == pytest.approx(0.004)
    assert lag.deviation == pytest.approx(0.0, abs=1e-6)
    lag.sample(-0.001)  # a timer run a little early is not late
    assert lag.mean == pytest.approx(0.004 * (1 - WEIGHT))
    assert lag.samples == 1002


async def test_a_blocked_loop_is_measured_late() -> None:
    lag = probe(asyncio.get_running_loop())
    assert not lag.running  # nothing holds it: nothing is scheduled
    lag.hold()
    try:
        await until(lambda: lag.samples >= 3, what="the probe to sample")
        before = lag.samples
        time.sleep(0.050)  # the loop is held up: the next sample is ~50 ms late
        await until(lambda: lag.samples > before, what="the sample after the block")
        # One sample of at least 50 ms less a period, decayed by at most a few idle ones.
        assert lag.mean >= WEIGHT * (0.050 - PERIOD_S) * (1 - WEIGHT) ** 5
        assert lag.deviation > 0
    finally:
        lag.release()
    assert not lag.running


async def test_the_probe_runs_while_anything_holds_it() -> None:
    lag = probe(asyncio.get_running_loop())
    assert probe(asyncio.get_running_loop()) is lag  # one per loop
    lag.hold()
    lag.hold()
    lag.release()
    assert lag.running
    lag.release()
    assert not lag.running
    lag.release()  # one release too many changes nothing
    lag.hold()
    assert lag.running
    lag.release()


def closed_loop() -> asyncio.AbstractEventLoop:
    """A loop for a probe fed by hand (never held, so never scheduled on)."""
    loop = asyncio.new_event_loop()
    loop.close()
    return loop
