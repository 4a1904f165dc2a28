"""The batching contract, with a runtime stand-in that records every batch it gets."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import pytest

from inferd.core.serving.batcher import INLINE_MIN_SAMPLES, Arrays, Batcher
from inferd.core.serving.stats import VersionStats
from inferd.errors import DeadlineExceeded, InternalError, ResourceExhausted, Unavailable
from tests.conftest import until


class Recorder:
    """Doubles its input; can be held at a gate so requests pile up behind it."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, inputs: Arrays) -> Arrays:
        self.entered.set()
        self.gate.wait(10)
        x = inputs["x"]
        self.batches.append(x.shape[0])
        return {"y": x * 2}


def make(run: Any, **options: Any) -> Batcher:
    options.setdefault("max_batch_size", 8)
    batcher = Batcher(run, stats=VersionStats("m", "1"), **options)
    batcher.start()
    return batcher


def rows(n: int, value: float = 1.0, width: int = 2) -> Arrays:
    return {"x": np.full((n, width), value, dtype=np.float32)}


async def wait_entered(recorder: Recorder) -> None:
    await until(recorder.entered.is_set, 10, "the model to be called")


async def test_requests_queued_while_busy_share_a_batch() -> None:
    recorder = Recorder()
    batcher = make(recorder)
    recorder.gate.clear()
    first = asyncio.create_task(batcher.submit(rows(1, 0.0)))
    await wait_entered(recorder)
    rest = [asyncio.create_task(batcher.submit(rows(1, float(i)))) for i in range(1, 6)]
    await asyncio.sleep(0)
    recorder.gate.set()
    results = await asyncio.gather(first, *rest)
    assert recorder.batches == [1, 5]
    for i, result in enumerate(results):
        assert result["y"].tolist() == [[2.0 * i, 2.0 * i]]
    await batcher.close()


async def test_batch_counts_rows_not_requests_and_respects_the_max() -> None:
    recorder = Recorder()
    batcher = make(recorder, max_batch_size=8)
    recorder.gate.clear()
    blocker = asyncio.create_task(batcher.submit(rows(1)))
    await wait_entered(recorder)
    tasks = [asyncio.create_task(batcher.submit(rows(3, float(i)))) for i in range(4)]
    await asyncio.sleep(0)
    recorder.gate.set()
    results = await asyncio.gather(blocker, *tasks)
    assert recorder.batches == [1, 6, 6]
    for i, result in enumerate(results[1:]):
        assert result["y"].shape == (3, 2)
        assert np.all(result["y"] == 2.0 * i)
    await batcher.close()


async def test_different_shapes_are_never_mixed() -> None:
    recorder = Recorder()
    batcher = make(recorder)
    recorder.gate.clear()
    blocker = asyncio.create_task(batcher.submit(rows(1)))
    await wait_entered(recorder)
    narrow = [asyncio.create_task(batcher.submit(rows(1, width=2))) for _ in range(2)]
    wide = [asyncio.create_task(batcher.submit(rows(1, width=3))) for _ in range(2)]
    await asyncio.sleep(0)
    recorder.gate.set()
    await asyncio.gather(blocker, *narrow, *wide)
    assert recorder.batches == [1, 2, 2]
    assert all(t.result()["y"].shape == (1, 3) for t in wide)
    await batcher.close()


async def test_queue_delay_waits_for_more_requests() -> None:
    recorder = Recorder()
    batcher = make(recorder, max_batch_size=4, max_queue_delay_s=5.0)
    tasks = [asyncio.create_task(batcher.submit(rows(1))) for _ in range(4)]
    await asyncio.gather(*tasks)
    # The first request waited for the batch to fill instead of running alone.
    assert recorder.batches == [4]
    await batcher.close()


async def test_queue_delay_closes_a_partial_batch() -> None:
    recorder = Recorder()
    batcher = make(recorder, max_batch_size=64, max_queue_delay_s=0.01)
    start = time.monotonic()
    await asyncio.gather(*(batcher.submit(rows(1)) for _ in range(3)))
    assert recorder.batches == [3]
    assert time.monotonic() - start < 5
    await batcher.close()


async def test_preferred_batch_size_closes_early() -> None:
    recorder = Recorder()
    batcher = make(recorder, max_batch_size=64, max_queue_delay_s=10.0, preferred_batch_sizes=[2])
    await asyncio.wait_for(asyncio.gather(*(batcher.submit(rows(1)) for _ in range(2))), 5)
    assert recorder.batches == [2]
    await batcher.close()


async def test_a_failure_reaches_exactly_its_batch() -> None:
    calls: list[int] = []

    def flaky(inputs: Arrays) -> Arrays:
        calls.append(len(calls))
        if inputs["x"][0, 0] < 0:
            raise RuntimeError("boom")
        return {"y": inputs["x"]}

    batcher = make(flaky, max_batch_size=1)
    bad = asyncio.create_task(batcher.submit(rows(1, -1.0)))
    good = asyncio.create_task(batcher.submit(rows(1, 1.0)))
    with pytest.raises(InternalError, match="boom"):
        await bad
    assert (await good)["y"].tolist() == [[1.0, 1.0]]
    await batcher.close()


async def test_a_model_that_exits_fails_its_batch_and_the_instance_goes_on() -> None:
    def exits(inputs: Arrays) -> Arrays:
        if inputs["x"][0, 0] < 0:
            raise SystemExit(3)
        return {"y": inputs["x"]}

    batcher = make(exits, max_batch_size=1)
    with pytest.raises(InternalError, match="SystemExit"):
        await asyncio.wait_for(batcher.submit(rows(1, -1.0)), 5)
    assert (await asyncio.wait_for(batcher.submit(rows(1, 2.0)), 5))["y"].tolist() == [[2.0, 2.0]]
    await batcher.close()


async def test_runtime_changing_the_batch_size_is_an_error() -> None:
    batcher = make(lambda inputs: {"y": np.zeros((1, 2))})
    with pytest.raises(InternalError, match="returned 1 rows"):
        await batcher.submit(rows(3))
    await batcher.close()


async def test_full_queue_refuses_at_once() -> None:
    recorder = Recorder()
    batcher = make(recorder, max_queue_size=2, max_batch_size=1)
    recorder.gate.clear()
    running = asyncio.create_task(batcher.submit(rows(1)))
    await wait_entered(recorder)
    queued = [asyncio.create_task(batcher.submit(rows(1))) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(ResourceExhausted) as info:
        await batcher.submit(rows(1))
    assert info.value.retry_after_s is not None
    recorder.gate.set()
    await asyncio.gather(running, *queued)
    await batcher.close()


async def test_expired_request_is_dropped_before_compute() -> None:
    recorder = Recorder()
    batcher = make(recorder, max_batch_size=1)
    recorder.gate.clear()
    running = asyncio.create_task(batcher.submit(rows(1, 1.0)))
    await wait_entered(recorder)
    with pytest.raises(DeadlineExceeded):
        await batcher.submit(rows(1, 7.0), deadline=time.monotonic() + 0.05)
    recorder.gate.set()
    await running
    await batcher.close()
    # Only the first request ever reached the runtime.
    assert recorder.batches == [1]


async def test_each_request_expires_at_its_own_deadline_whatever_the_order() -> None:
    """One timer serves a batcher's deadlines: a later request with an earlier deadline
    still expires first, a request in a running batch expires too, and one without a
    deadline waits for its answer."""
    recorder = Recorder()
    batcher = make(recorder, max_batch_size=1)
    recorder.gate.clear()
    now = time.monotonic()
    running = asyncio.create_task(batcher.submit(rows(1), deadline=now + 0.5))
    await wait_entered(recorder)
    late = asyncio.create_task(batcher.submit(rows(1), deadline=now + 5.0))
    patient = asyncio.create_task(batcher.submit(rows(1)))
    early = asyncio.create_task(batcher.submit(rows(1), deadline=now + 0.05))
    with pytest.raises(DeadlineExceeded):
        await early
    assert not running.done() and not late.done()
    with pytest.raises(DeadlineExceeded):
        await running  # its batch still runs in the instance thread
    assert not late.done() and not patient.done()
    recorder.gate.set()
    await asyncio.gather(late, patient)
    await batcher.close()


async def test_past_deadline_is_refused_before_queueing() -> None:
    batcher = make(Recorder())
    with pytest.raises(DeadlineExceeded):
        await batcher.submit(rows(1), deadline=time.monotonic() - 1)
    await batcher.close()


async def test_close_finishes_queued_work_then_refuses() -> None:
    recorder = Recorder()
    batcher = make(recorder, max_batch_size=1)
    recorder.gate.clear()
    tasks = [asyncio.create_task(batcher.submit(rows(1))) for _ in range(3)]
    await wait_entered(recorder)
    closing = asyncio.create_task(batcher.close())
    await asyncio.sleep(0)
    with pytest.raises(Unavailable):
        await batcher.submit(rows(1))
    recorder.gate.set()
    await closing
    assert all(t.done() and not t.exception() for t in tasks)
    assert recorder.batches == [1, 1, 1]


async def test_instances_run_in_parallel() -> None:
    both_inside = threading.Barrier(2, timeout=10)

    def run(inputs: Arrays) -> Arrays:
        both_inside.wait()  # deadlocks (and times out) unless two threads run at once
        return {"y": inputs["x"]}

    batcher = make(run, max_batch_size=1, instances=2)
    await asyncio.gather(batcher.submit(rows(1)), batcher.submit(rows(1)))
    await batcher.close()


async def test_stats_record_batches() -> None:
    stats = VersionStats("m", "1")
    batcher = Batcher(lambda i: {"y": i["x"]}, stats=stats, max_batch_size=4)
    batcher.start()
    await batcher.submit(rows(3))
    await batcher.close()
    doc = stats.as_triton()
    assert doc["inference_count"] == 3
    assert doc["execution_count"] == 1
    assert doc["batch_stats"][0]["batch_size"] == 3
    assert doc["inference_stats"]["queue"]["count"] == 1


async def test_expired_requests_leave_the_queue_count_at_once() -> None:
    recorder = Recorder()
    batcher = make(recorder, max_queue_size=2, max_batch_size=1)
    recorder.gate.clear()
    running = asyncio.create_task(batcher.submit(rows(1)))
    await wait_entered(recorder)
    for _ in range(2):
        with pytest.raises(DeadlineExceeded):
            await batcher.submit(rows(1), deadline=time.monotonic() + 0.01)
    # The instance is still busy, yet the two expired requests no longer fill the queue:
    # two more fit in it (a full queue refuses at once).
    queued = [asyncio.create_task(batcher.submit(rows(1))) for _ in range(2)]
    await asyncio.sleep(0)
    assert not any(task.done() for task in queued)
    with pytest.raises(ResourceExhausted):
        await batcher.submit(rows(1))
    recorder.gate.set()
    await asyncio.gather(running, *queued)
    await batcher.close()


async def test_a_batch_past_its_time_marks_the_batcher_faulty_until_it_returns() -> None:
    recorder = Recorder()
    batcher = make(recorder, max_batch_size=1, max_batch_time_s=0.05)
    recorder.gate.clear()
    running = asyncio.create_task(batcher.submit(rows(1)))
    await wait_entered(recorder)
    queued = asyncio.create_task(batcher.submit(rows(1)))
    with pytest.raises(Unavailable, match="max_batch_time_s"):
        await running
    with pytest.raises(Unavailable, match="max_batch_time_s"):
        await queued
    assert batcher.fault is not None and "0.05 s" in batcher.fault
    with pytest.raises(Unavailable, match="unhealthy"):
        await batcher.submit(rows(1))
    recorder.gate.set()
    await until(lambda: batcher.fault is None, 10, "the overrunning batch to return")
    result = await batcher.submit(rows(1, 3.0))
    assert result["y"].tolist() == [[6.0, 6.0]]
    await batcher.close()


async def test_close_within_a_grace_abandons_a_thread_that_never_returns() -> None:
    recorder = Recorder()
    batcher = make(recorder, max_batch_size=1)
    recorder.gate.clear()
    running = asyncio.create_task(batcher.submit(rows(1)))
    await wait_entered(recorder)
    queued = asyncio.create_task(batcher.submit(rows(1)))
    await asyncio.sleep(0)
    started = time.monotonic()
    assert await batcher.close(grace_s=0.05) is False
    assert time.monotonic() - started < 1.0
    for task in (running, queued):
        with pytest.raises(Unavailable, match="unloaded"):
            await task
    recorder.gate.set()  # the abandoned thread returns into a closed batcher


async def test_close_within_a_grace_reports_finished_work() -> None:
    batcher = make(Recorder(), max_batch_size=1)
    await batcher.submit(rows(1))
    assert await batcher.close(grace_s=0.05) is True


class Threads:
    """Doubles its input, remembering the thread and rows of every call; ``pause`` makes
    it slow."""

    def __init__(self, pause: float = 0.0) -> None:
        self.threads: list[threading.Thread] = []
        self.rows: list[int] = []
        self.pause = pause

    def __call__(self, inputs: Arrays) -> Arrays:
        self.threads.append(threading.current_thread())
        self.rows.append(inputs["x"].shape[0])
        if self.pause:
            time.sleep(self.pause)
        return {"y": inputs["x"] * 2}


async def test_a_cheap_idle_model_runs_inline_once_measured() -> None:
    model = Threads()
    batcher = make(model, inline_max_compute_s=0.05)
    for i in range(INLINE_MIN_SAMPLES + 4):
        result = await batcher.submit(rows(1, float(i)))
        assert result["y"].tolist() == [[2.0 * i, 2.0 * i]]
    loop_thread = threading.current_thread()
    # Measured first, in the instance thread; then on the loop, without the hop.
    assert all(t is not loop_thread for t in model.threads[:INLINE_MIN_SAMPLES])
    assert all(t is loop_thread for t in model.threads[INLINE_MIN_SAMPLES:])
    await batcher.close()


async def test_a_slow_model_never_runs_inline() -> None:
    model = Threads(pause=0.003)
    batcher = make(model, inline_max_compute_s=0.001)
    for _ in range(INLINE_MIN_SAMPLES + 4):
        await batcher.submit(rows(1))
    assert threading.current_thread() not in model.threads
    await batcher.close()


async def test_in_a_thread_a_call_costs_its_cpu_time_when_measured_so() -> None:
    """cost_by_cpu (a model that computes on the calling thread): an instance thread's
    call is measured by that thread's CPU time, so time spent waiting (as for the
    interpreter lock while the loop is busy) does not make a cheap model look slow. A call
    that waits 3 ms is cheap by that measure; by elapsed time it is not."""
    loop_thread = threading.current_thread()
    for by_cpu in (True, False):
        model = Threads(pause=0.003)
        batcher = make(model, inline_max_compute_s=0.001, cost_by_cpu=by_cpu)
        for _ in range(INLINE_MIN_SAMPLES + 1):
            await batcher.submit(rows(1))
        assert all(t is not loop_thread for t in model.threads[:INLINE_MIN_SAMPLES])
        assert (model.threads[INLINE_MIN_SAMPLES] is loop_thread) is by_cpu
        await batcher.close()


async def test_a_call_in_a_thread_may_lower_the_measured_cost_but_never_raise_it() -> None:
    """Measured slow (3 ms a call), the model runs in its thread; one much slower call
    there (30 ms, as under contention for the interpreter lock) does not count, and cheap
    calls bring the average under the limit as fast as they would without it."""
    loop_thread = threading.current_thread()
    model = Threads(pause=0.003)
    batcher = make(model, inline_max_compute_s=0.001)
    for _ in range(INLINE_MIN_SAMPLES):
        await batcher.submit(rows(1))
    model.pause = 0.03
    await batcher.submit(rows(1))
    model.pause = 0.0
    # 3 ms * 0.9**n falls under 1 ms after 11 cheap calls (after 17 from 5.7 ms, the
    # average had the slow call counted).
    for _ in range(14):
        await batcher.submit(rows(1))
    assert model.threads[-1] is loop_thread
    assert all(t is not loop_thread for t in model.threads[: INLINE_MIN_SAMPLES + 1])
    await batcher.close()


async def test_inline_is_off_by_default_and_with_a_queue_delay() -> None:
    for options in ({}, {"inline_max_compute_s": 0.05, "max_queue_delay_s": 0.001}):
        model = Threads()
        batcher = make(model, **options)
        for _ in range(INLINE_MIN_SAMPLES + 4):
            await batcher.submit(rows(1))
        assert threading.current_thread() not in model.threads
        await batcher.close()


async def test_requests_that_come_together_still_form_one_batch_inline() -> None:
    model = Threads()
    batcher = make(model, inline_max_compute_s=0.05)
    for _ in range(INLINE_MIN_SAMPLES):
        await batcher.submit(rows(1))
    results = await asyncio.gather(*(batcher.submit(rows(1, float(i))) for i in range(6)))
    assert [r["y"][0, 0] for r in results] == [2.0 * i for i in range(6)]
    assert model.rows[-1] == 6  # one call of the six rows
    assert model.threads[-1] is threading.current_thread()  # on the loop
    await batcher.close()


async def test_a_measurement_seeded_at_load_runs_inline_from_the_first_request() -> None:
    model = Threads()
    batcher = make(model, inline_max_compute_s=0.05)
    batcher.seed_call_cost(0.0001)
    await batcher.submit(rows(1))
    assert model.threads == [threading.current_thread()]
    await batcher.close()


async def test_inline_runs_give_the_loop_back_between_slices() -> None:
    # A model that does not batch, a long queue: one turn runs a slice of it inline, the
    # loop goes on, and every request is answered in order.
    model = Threads(pause=0.0004)
    batcher = make(model, max_batch_size=0, inline_max_compute_s=0.05)
    batcher.seed_call_cost(0.0004)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    beat = asyncio.create_task(ticker())
    results = await asyncio.gather(*(batcher.submit(rows(1, float(i))) for i in range(20)))
    beat.cancel()
    assert [r["y"][0, 0] for r in results] == [2.0 * i for i in range(20)]
    assert ticks >= 3  # 20 calls of 0.4 ms in slices of 1 ms: the loop ran in between
    await batcher.close()


async def test_an_inline_failure_reaches_its_request_as_an_internal_error() -> None:
    calls = 0

    def fails_later(inputs: Arrays) -> Arrays:
        nonlocal calls
        calls += 1
        if calls > INLINE_MIN_SAMPLES:
            raise ValueError("broken")
        return {"y": inputs["x"]}

    batcher = make(fails_later, inline_max_compute_s=0.05)
    for _ in range(INLINE_MIN_SAMPLES):
        await batcher.submit(rows(1))
    with pytest.raises(InternalError, match="broken"):
        await batcher.submit(rows(1))
    await batcher.close()
