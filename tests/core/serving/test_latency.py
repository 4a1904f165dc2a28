"""Latency targets: compute time per batch size, the batch limit, early refusals."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inferd.core.serving.batcher import Batcher
from inferd.core.serving.latency import TARGETED, ComputeModel, TargetBatcher
from inferd.core.serving.looplag import probe
from inferd.core.serving.stats import VersionStats
from inferd.core.serving.tail import CUT, MIN_FACTOR, RAISE
from inferd.errors import Unavailable
from inferd.metrics import Metrics
from inferd.serving_metrics import TargetGauges
from tests.conftest import NodeFactory, until
from tests.core.serving.test_pipeline import python_model, tensor


def test_one_size_seen_predicts_in_proportion() -> None:
    model = ComputeModel()
    assert not model.measured
    model.add(4, 0.008)
    assert model.seconds(1) == pytest.approx(0.002)
    assert model.seconds(8) == pytest.approx(0.016)
    assert model.largest_within(0.020, 64) == 10
    assert model.largest_within(0.001, 64) == 1  # nothing fits: one row at a time


def test_a_line_through_the_sizes_seen() -> None:
    model = ComputeModel()
    for _ in range(3):
        model.add(1, 0.030 + 0.002)
        model.add(6, 0.030 + 0.012)
    assert model.line(10) == pytest.approx(0.050)
    assert model.largest_within(0.080, 8) == 8  # within max_batch_size
    model.add(6, 1.0)  # a slow batch moves its size's mean by a fifth of the difference
    assert 0.2 < model.line(6) < 0.24


def test_predictions_widen_with_the_spread_of_the_measurements() -> None:
    steady, noisy = ComputeModel(), ComputeModel()
    for n in range(40):
        steady.add(8, 0.010)
        noisy.add(8, 0.005 if n % 2 else 0.015)  # the same mean, 50 % off every time
    assert steady.spread == pytest.approx(0.0)
    assert steady.seconds(8) == pytest.approx(0.010)
    assert noisy.spread > 0.3
    assert noisy.seconds(8) > 1.6 * noisy.line(8)
    assert noisy.largest_within(0.020, 64) < steady.largest_within(0.020, 64) == 16


def gated_batcher(
    target_s: float, gauges: TargetGauges | None = None
) -> tuple[TargetBatcher, threading.Event]:
    gate = threading.Event()

    def run(inputs: dict[str, Any]) -> dict[str, Any]:
        gate.wait(10)
        return inputs

    stats = VersionStats("m", "1")
    batcher = TargetBatcher(
        run, target_s=target_s, gauges=gauges, stats=stats, max_batch_size=32, instances=1
    )
    return batcher, gate


def teach(batcher: TargetBatcher) -> None:
    """c(b) = 30 ms + 2 ms per row, measured often enough that the spread is gone."""
    for _ in range(60):
        batcher.measured(1, 0.032)
        batcher.measured(6, 0.042)


def row() -> dict[str, Any]:
    return {"x": np.zeros((1, 2), dtype=np.float32)}


async def test_requests_past_the_target_are_refused_at_admission() -> None:
    metrics = Metrics()
    batcher, gate = gated_batcher(0.112, TargetGauges(metrics.serving, "m", "1"))
    batcher.start()
    # Taught: c(b) = 30 ms + 2 ms per row (steadily: no spread left), so batches of at
    # most 10 rows (2 * c(10) = 100 ms, within the 100.8 ms goal of a 112 ms target).
    teach(batcher)
    assert batcher.batch_limit == 10
    running = asyncio.ensure_future(batcher.submit(row()))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert batcher.running == 1
    # Ten more fit in one batch after the running one; past twenty rows (three batches
    # of 50 ms) every request is over the target, however long the test itself took.
    admitted, refused = [], []
    for _ in range(40):
        try:
            admitted.append(asyncio.ensure_future(batcher.submit(row())))
            await asyncio.sleep(0)
            if admitted[-1].done():
                admitted[-1].result()
        except Unavailable as exc:
            refused.append(exc)
            admitted.pop()
    assert 10 <= len(admitted) <= 20
    assert len(refused) == 40 - len(admitted)
    assert refused[-1].retry_after_s is not None and refused[-1].retry_after_s > 0
    assert "past its latency target of 112 ms; retry later" in refused[-1].message
    state = batcher.state()
    assert state["batch_limit"] == 10 and state["target_ms"] == 112
    assert state["refused"] == {"target": len(refused), "deadline": 0, "queue": 0}
    assert state["predicted_wait_ms"] > 100.8
    rendered = metrics.render().decode()
    assert (
        f'inferd_early_refusals_total{{model="m",reason="target",version="1"}} {len(refused)}.0'
        in rendered
    )
    assert 'inferd_batch_limit{model="m",version="1"} 10.0' in rendered
    gate.set()
    await asyncio.gather(running, *admitted)
    await batcher.close()


async def test_a_request_whose_deadline_comes_first_is_refused() -> None:
    batcher, gate = gated_batcher(0.112)
    batcher.start()
    teach(batcher)
    running = asyncio.ensure_future(batcher.submit(row()))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    # At least c(1) = 32 ms away, within the target: refused only for its own deadline.
    with pytest.raises(Unavailable, match=r"past the request's deadline \(\d+ ms left\)"):
        await batcher.submit(row(), time.monotonic() + 0.020)
    assert batcher.state()["refused"] == {"target": 0, "deadline": 1, "queue": 0}
    gate.set()
    await running
    await batcher.close()


async def test_nothing_is_refused_before_the_first_batch_is_measured() -> None:
    batcher, gate = gated_batcher(0.001)
    batcher.start()
    assert batcher.predicted_wait() is None
    gate.set()
    answered = await asyncio.gather(*(batcher.submit(row()) for _ in range(5)))
    assert len(answered) == 5
    assert batcher.state()["predicted_wait_ms"] is not None
    await batcher.close()


async def test_the_batch_limit_follows_the_measured_compute_time() -> None:
    """A model of 4 ms + 1 ms per row under a 30 ms target: batches of about 11 rows at
    most, not the 64 it could take (fewer once late answers cut the budget: the first
    measurement, one size, predicts small batches short)."""

    def run(inputs: dict[str, Any]) -> dict[str, Any]:
        time.sleep(0.004 + 0.001 * len(inputs["x"]))
        return inputs

    batcher = TargetBatcher(
        run, target_s=0.030, stats=VersionStats("m", "1"), max_batch_size=64, instances=1
    )
    batcher.start()
    for _ in range(6):
        results = await asyncio.gather(
            *(batcher.submit(row()) for _ in range(64)), return_exceptions=True
        )
        assert any(not isinstance(r, Exception) for r in results)
    assert batcher.batch_limit <= 12
    await batcher.close()


YAML_MODEL = """
import time


class Model:
    def predict(self, inputs):
        time.sleep(0.05)
        return {"y": inputs["x"]}
"""


def slow_repo(root: Path, target_ms: float | None, delay_ms: float = 0) -> Path:
    batching: dict[str, Any] = {"max_queue_delay_ms": delay_ms}
    if target_ms is not None:
        batching["latency_target_ms"] = target_ms
    python_model(
        root,
        "slow",
        YAML_MODEL,
        inputs=[tensor("x", "FP32", [-1, 2])],
        outputs=[tensor("y", "FP32", [-1, 2])],
        max_batch_size=1,
        batching=batching,
    )
    return root


async def test_without_a_target_the_plain_batcher_serves(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    node = node_factory(slow_repo(tmp_path, None))
    await node.start()
    assert type(node.manager.resolve("slow").batcher) is Batcher
    assert "latency_target" not in node.catalog.model_stats("slow")["model_stats"][0]


async def test_the_target_must_be_above_the_queue_delay(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    node = node_factory(slow_repo(tmp_path, 5, delay_ms=5))
    await node.start()
    (row_,) = node.control.repository_index(full=True)
    assert row_["state"] == "FAILED"
    assert row_["reason"].endswith(
        "batching.latency_target_ms (5) must be above the queue delay (5 ms)"
    )


async def test_a_limit_below_one_request_still_runs_it_alone() -> None:
    def run(inputs: dict[str, Any]) -> dict[str, Any]:
        return inputs

    stats = VersionStats("m", "1")
    batcher = TargetBatcher(run, target_s=0.010, stats=stats, max_batch_size=32, instances=1)
    batcher.start()
    batcher.measured(1, 0.004)  # 2 * c(b) <= 10 ms: one row per batch (8 rows: 32 ms)
    assert batcher.batch_limit == 1
    eight = {"x": np.zeros((8, 2), dtype=np.float32)}
    for _ in range(3):  # each one alone (an idle model admits it), as one batch of 8 rows
        assert (await batcher.submit(eight))["x"].shape == (8, 2)
    assert [b["batch_size"] for b in stats.as_triton()["batch_stats"]] == [8]
    await batcher.close()


async def test_the_performance_doc_example_serves(
    example_repo: Path, tmp_path: Path, node_factory: NodeFactory
) -> None:
    """docs/performance.md's model.yaml, on the example's wide model."""
    import re
    import shutil

    doc = (Path(__file__).parents[3] / "docs" / "performance.md").read_text()
    section = doc[doc.index("\n## Latency targets\n") :]
    block = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert block is not None
    first, _, rest = block.group(1).partition("\n")
    assert first == "# models/wide/model.yaml"
    shutil.copytree(example_repo / "wide" / "1", tmp_path / "wide" / "1")
    (tmp_path / "wide" / "model.yaml").write_text(rest)
    node = node_factory(tmp_path)
    await node.start()
    (stats,) = node.catalog.model_stats("wide")["model_stats"]
    state = stats["latency_target"]
    # The loop's lag, sampled since the model started: the wait planned for before arrivals.
    before = state.pop("before_ms")
    assert 0 <= before < 5
    assert state.pop("budget_ms") == pytest.approx(45 - before)  # 10 % left for the unseen
    assert state == {
        "target_ms": 50,
        "outside_ms": before,
        "factor": 1.0,
        "batch_limit": 256,
        "predicted_wait_ms": None,
        "answers": 0,
        "late": 0,
        "refused": {"target": 0, "deadline": 0, "queue": 0},
    }


async def test_a_running_target_samples_the_loops_lag_and_plans_for_it() -> None:
    """While a target's batcher runs, its loop's lag is sampled; a loop held up comes off
    the budget as wait before the arrival; closing the batcher stops the probe."""
    batcher = TargetBatcher(
        lambda inputs: inputs, target_s=0.100, stats=VersionStats("m", "1"), max_batch_size=8
    )
    lag = probe(asyncio.get_running_loop())
    assert not lag.running and "m" not in TARGETED
    batcher.start()
    assert lag.running
    assert TARGETED["m"] == 1  # the V2 REST route asks it before decoding
    await until(lambda: lag.samples >= 2, what="the probe to sample")
    before = lag.samples
    time.sleep(0.030)  # the loop is held up
    await until(lambda: lag.samples > before, what="the sample after the hold-up")
    state = batcher.state()
    assert state["before_ms"] > 1
    assert state["outside_ms"] == pytest.approx(state["before_ms"])
    assert state["budget_ms"] == pytest.approx(90 - state["before_ms"], abs=0.01)
    await batcher.close()
    assert not lag.running and "m" not in TARGETED


async def test_answers_are_timed_from_their_arrival() -> None:
    """A request that arrived 200 ms before it reached the queue is late against a 100 ms
    target however fast the model; the same request timed from the queue is not. The
    factor is cut, and the time outside the batcher comes off the budget."""

    def run(inputs: dict[str, Any]) -> dict[str, Any]:
        return inputs

    batcher = TargetBatcher(
        run, target_s=0.100, stats=VersionStats("m", "1"), max_batch_size=8, instances=1
    )
    batcher.start()
    batcher.measured(1, 0.001)  # predicted: requests admitted from now on are judged
    await batcher.submit(row(), None, time.monotonic() - 0.200)
    await asyncio.sleep(0)  # the answer is timed at the loop's next turn
    state = batcher.state()
    assert (state["answers"], state["late"]) == (1, 1)
    assert state["factor"] == pytest.approx(CUT, abs=1e-4)
    # One sample x of 200 ms and more: a mean of x / 20 and a deviation of 0.95 x / 20.
    assert 0.1925 * 200 <= state["outside_ms"] < 0.1925 * 250
    assert state["budget_ms"] == pytest.approx(90 * CUT - state["outside_ms"], abs=0.01)
    await batcher.submit(row())
    await asyncio.sleep(0)
    assert (batcher.state()["answers"], batcher.state()["late"]) == (2, 1)
    await batcher.close()


async def test_a_late_answer_lowers_the_batch_limit_at_once() -> None:
    batcher, gate = gated_batcher(0.112)
    batcher.start()
    gate.set()
    teach(batcher)
    assert batcher.batch_limit == 10
    # Arrived a second ago: the time outside the batcher leaves only the budget's floor,
    # a fifth of the 100.8 ms goal, less than two batches of one row (2 * 32 ms).
    await batcher.submit(row(), None, time.monotonic() - 1.0)
    await asyncio.sleep(0)
    assert batcher.state()["budget_ms"] == pytest.approx(100.8 * MIN_FACTOR)
    assert batcher.batch_limit == 1
    await batcher.close()


async def test_a_request_admitted_before_any_measurement_is_not_judged() -> None:
    def run(inputs: dict[str, Any]) -> dict[str, Any]:
        return inputs

    batcher = TargetBatcher(
        run, target_s=0.100, stats=VersionStats("m", "1"), max_batch_size=8, instances=1
    )
    batcher.start()
    await batcher.submit(row(), None, time.monotonic() - 1.0)  # nothing predicted for it
    await asyncio.sleep(0)
    state = batcher.state()
    assert (state["answers"], state["late"], state["factor"]) == (0, 0, 1.0)
    assert state["predicted_wait_ms"] is not None  # but its batch was measured
    await batcher.close()


async def test_a_late_answer_cuts_the_budget_and_answers_on_time_restore_it() -> None:
    slow = [True]

    def run(inputs: dict[str, Any]) -> dict[str, Any]:
        if slow[0]:
            time.sleep(0.050)
        return inputs

    batcher = TargetBatcher(
        run, target_s=0.020, stats=VersionStats("m", "1"), max_batch_size=8, instances=1
    )
    batcher.start()
    batcher.measured(1, 0.001)
    # Each alone (an idle model admits it), each late: 50 ms against an 18 ms goal.
    for _ in range(3):
        await batcher.submit(row())
        await asyncio.sleep(0)
    assert batcher.state()["factor"] == pytest.approx(CUT**3, abs=1e-4)
    slow[0] = False
    needed = math.ceil(3 * math.log(1 / CUT) / math.log(RAISE))  # 199 per late answer
    for _ in range(2 * needed):  # on time (twice as many: a busy machine may stall one)
        await batcher.submit(row())
        await asyncio.sleep(0)
    assert batcher.state()["factor"] == 1.0
    await batcher.close()
