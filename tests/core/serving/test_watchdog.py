"""The batch watchdog: a fault while a batch overruns, none otherwise."""

from __future__ import annotations

import asyncio

from inferd.core.serving.watchdog import Watchdog
from tests.conftest import until


async def test_a_batch_within_its_limit_leaves_no_fault() -> None:
    faults: list[str] = []
    watchdog: Watchdog[list[int]] = Watchdog("m", 0.05, faults.append)
    batch = [1]
    watchdog.started(batch, asyncio.get_running_loop())
    watchdog.finished(batch)
    await asyncio.sleep(0.1)
    assert watchdog.fault is None
    assert faults == []


async def test_an_overrunning_batch_is_a_fault_until_it_returns() -> None:
    faults: list[str] = []
    watchdog: Watchdog[list[int]] = Watchdog("m", 0.05, faults.append)
    slow, quick = [1], [2]
    loop = asyncio.get_running_loop()
    watchdog.started(slow, loop)
    watchdog.started(quick, loop)
    watchdog.finished(quick)
    await until(lambda: bool(faults), 5, "the overrun (its timer fires after 0.05 s)")
    assert faults == ["a batch has been running for over 0.05 s (max_batch_time_s)"]
    assert watchdog.fault == faults[0]
    assert list(watchdog.running()) == [slow]
    watchdog.finished(slow)
    assert watchdog.fault is None
    assert list(watchdog.running()) == []


async def test_without_a_limit_nothing_overruns() -> None:
    watchdog: Watchdog[list[int]] = Watchdog("m", None, lambda fault: None)
    watchdog.started([1], asyncio.get_running_loop())
    assert watchdog.fault is None
