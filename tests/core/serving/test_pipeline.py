"""Pipelines: steps that are served models, checked at load, run through their batchers."""

from __future__ import annotations

import asyncio
import logging
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from inferd.core.messages import InferRequest
from inferd.errors import DeadlineExceeded, InternalError, Unavailable
from inferd.types import Tensor
from tests.conftest import NodeFactory, wait_until

ADD_ONE = """
class Model:
    def predict(self, inputs):
        return {"y": inputs["x"] + 1}
"""
# Doubles its input once the file "open" exists beside the repository (at most 5 s), and
# notes in "entered" that a batch came in; counts its batches in "batches".
GATE = """
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


class Model:
    def predict(self, inputs):
        (ROOT / "entered").touch()
        with open(ROOT / "batches", "a") as log:
            log.write("batch\\n")
        until = time.monotonic() + 5
        while not (ROOT / "open").exists() and time.monotonic() < until:
            time.sleep(0.005)
        return {"z": inputs["y"] * 2}
"""
FAILS_ON_NEGATIVE = """
class Model:
    def predict(self, inputs):
        if (inputs["z"] < 0).any():
            raise ValueError("negative input")
        return {"out": inputs["z"].sum(axis=1, keepdims=True)}
"""


def tensor(name: str, datatype: str, shape: list[int]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape}


def python_model(root: Path, name: str, code: str, **config: Any) -> None:
    (root / name / "1").mkdir(parents=True)
    (root / name / "1" / "model.py").write_text(textwrap.dedent(code))
    doc = {"runtime": "python", "warmup": False, **config}
    (root / name / "model.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


PIPELINE = {
    "pipeline": {
        "steps": [
            {"name": "gate", "model": "gate", "inputs": {"y": "first.y"}},
            {"name": "first", "model": "add-one", "inputs": {"x": "x"}},
            {"name": "sum", "model": "sum", "inputs": {"z": "gate.z"}},
        ],
        "outputs": {"total": "sum.out", "doubled": "gate.z"},
    }
}


def write_repo(root: Path, pipeline: dict[str, Any] | None = None) -> Path:
    """``add-one`` (x -> y), ``gate`` (y -> z = 2y, waits for the file "open"), ``sum``
    (z -> out, the row's sum; fails on a negative value) and the pipeline ``p`` over them."""
    repo = root / "models"
    python_model(
        repo,
        "add-one",
        ADD_ONE,
        inputs=[tensor("x", "FP32", [-1, 2])],
        outputs=[tensor("y", "FP32", [-1, 2])],
    )
    python_model(
        repo,
        "gate",
        GATE,
        inputs=[tensor("y", "FP32", [-1, 2])],
        outputs=[tensor("z", "FP32", [-1, 2])],
    )
    python_model(
        repo,
        "sum",
        FAILS_ON_NEGATIVE,
        inputs=[tensor("z", "FP32", [-1, 2])],
        outputs=[tensor("out", "FP32", [-1, 1])],
    )
    (repo / "p").mkdir()
    (repo / "p" / "model.yaml").write_text(yaml.safe_dump(pipeline or PIPELINE, sort_keys=False))
    return repo


def request(values: list[list[float]], **parameters: Any) -> InferRequest:
    array = np.array(values, dtype=np.float32)
    return InferRequest("p", [Tensor("x", "FP32", array)], parameters=parameters)


def outputs(response: Any) -> dict[str, list[Any]]:
    return {o.name: o.data.tolist() for o in response.outputs}


async def test_a_pipeline_runs_its_steps_and_describes_itself(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    repo = write_repo(tmp_path)
    (tmp_path / "open").touch()
    node = node_factory(repo)
    await node.start()
    response = await node.service.infer(request([[1, 2], [3, 4]]))
    assert outputs(response) == {"total": [[10.0], [18.0]], "doubled": [[4, 6], [8, 10]]}
    metadata = node.catalog.model_metadata("p")
    assert metadata.platform == "ensemble"
    assert [spec.as_metadata() for spec in metadata.inputs] == [tensor("x", "FP32", [-1, 2])]
    assert [spec.as_metadata() for spec in metadata.outputs] == [
        tensor("total", "FP32", [-1, 1]),
        tensor("doubled", "FP32", [-1, 2]),
    ]
    assert node.catalog.model_config("p")["max_batch_size"] == 32
    (stats,) = node.catalog.model_stats("p")["model_stats"]
    steps = stats["pipeline"]["steps"]
    assert list(steps) == ["first", "gate", "sum"]  # in the order they run
    assert steps["gate"]["model"] == "gate" and steps["gate"]["version"] == "1"
    assert all(
        step["success"]["count"] == 1 and step["success"]["ns"] > 0 for step in steps.values()
    )
    assert stats["inference_stats"]["success"]["count"] == 1
    # Each step is an ordinary version: its own statistics count the rows it ran.
    (gate,) = node.catalog.model_stats("gate")["model_stats"]
    assert gate["inference_count"] == 2
    rendered = node.metrics.render().decode()
    assert (
        'inferd_pipeline_step_duration_seconds_count{model="p",step="gate",version="1"} 1.0'
        in rendered
    )


async def test_concurrent_requests_batch_at_a_step(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    repo = write_repo(tmp_path)
    node = node_factory(repo)
    await node.start()
    first = asyncio.ensure_future(node.service.infer(request([[0, 0]])))
    await asyncio.to_thread(wait_until, (tmp_path / "entered").exists, 10, "the gate's first batch")
    # While the gate holds its first batch, eight more requests queue there.
    rest = [asyncio.ensure_future(node.service.infer(request([[n, n]]))) for n in range(1, 9)]
    await asyncio.sleep(0.05)
    (tmp_path / "open").touch()
    responses = await asyncio.gather(first, *rest)
    assert [outputs(r)["total"] for r in responses] == [[[4.0 * n + 4]] for n in range(9)]
    (gate,) = node.catalog.model_stats("gate")["model_stats"]
    assert gate["execution_count"] == 2  # the eight queued ones ran as one batch
    assert gate["batch_stats"][-1]["batch_size"] == 8


async def test_a_failing_step_is_named(
    tmp_path: Path, node_factory: NodeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    repo = write_repo(tmp_path)
    (tmp_path / "open").touch()
    node = node_factory(repo)
    await node.start()
    with caplog.at_level(logging.ERROR, "inferd.service"), pytest.raises(InternalError) as failed:
        await node.service.infer(request([[-5, 1]]))
    assert "request id" in failed.value.message  # the client learns the id, not the cause
    assert "pipeline 'p' step 'sum' (model 'sum'): model 'sum' failed: ValueError" in caplog.text
    (stats,) = node.catalog.model_stats("p")["model_stats"]
    steps = stats["pipeline"]["steps"]
    assert (steps["first"]["success"]["count"], steps["sum"]["fail"]["count"]) == (1, 1)
    assert stats["inference_stats"]["fail"]["count"] == 1


async def test_a_step_model_that_is_gone_makes_the_pipeline_unavailable(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    repo = write_repo(tmp_path)
    (tmp_path / "open").touch()
    node = node_factory(repo)
    await node.start()
    await node.control.unload_model("sum")
    with pytest.raises(
        Unavailable, match=r"^pipeline 'p' step 'sum' \(model 'sum'\): model 'sum' is not ready"
    ):
        await node.service.infer(request([[1, 1]]))
    assert node.catalog.model_unready_reason("p") == (
        "unhealthy: step 'sum': model 'sum' is not ready (version 1: UNAVAILABLE unloaded)"
    )


async def test_the_deadline_covers_the_whole_pipeline(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    repo = write_repo(tmp_path)
    node = node_factory(repo)
    await node.start()
    with pytest.raises(
        DeadlineExceeded,
        match=r"^pipeline 'p' step 'gate' \(model 'gate'\): the request's deadline passed",
    ):
        await node.service.infer(request([[1, 1]], timeout=200_000))  # microseconds
    (tmp_path / "open").touch()
    (stats,) = node.catalog.model_stats("p")["model_stats"]
    steps = stats["pipeline"]["steps"]
    assert steps["first"]["success"]["count"] == 1
    assert steps["gate"]["fail"]["count"] == 1
    assert steps["sum"]["success"]["count"] + steps["sum"]["fail"]["count"] == 0  # never ran
    ran = lambda: node.catalog.model_stats("gate")["model_stats"][0]["execution_count"] == 1  # noqa: E731
    await asyncio.to_thread(wait_until, ran, 10, "the gate's batch to return")
    assert node.catalog.model_stats("sum")["model_stats"][0]["execution_count"] == 0


async def test_a_cancelled_request_leaves_the_step_queue(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    """A request cancelled (its client went away) while queued at a step never runs there
    nor at the steps after it."""
    repo = write_repo(tmp_path)
    node = node_factory(repo)
    await node.start()
    first = asyncio.ensure_future(node.service.infer(request([[1, 1]])))
    await asyncio.to_thread(wait_until, (tmp_path / "entered").exists, 10, "the gate's first batch")
    second = asyncio.ensure_future(node.service.infer(request([[2, 2]])))
    await asyncio.sleep(0.05)  # queued at the gate, behind the first
    second.cancel()
    (tmp_path / "open").touch()
    assert outputs(await first)["total"] == [[8.0]]
    with pytest.raises(asyncio.CancelledError):
        await second
    assert (tmp_path / "batches").read_text().count("batch") == 1
    (stats,) = node.catalog.model_stats("p")["model_stats"]
    assert stats["pipeline"]["steps"]["gate"]["fail"]["count"] == 1
    assert node.catalog.model_stats("sum")["model_stats"][0]["inference_count"] == 1


async def test_a_step_model_reloaded_under_traffic_fails_no_pipeline_request(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    repo = write_repo(tmp_path)
    (tmp_path / "open").touch()
    node = node_factory(repo)
    await node.start()

    async def traffic() -> list[Any]:
        answers = []
        for n in range(30):
            answers.append(await node.service.infer(request([[n, n]])))
            await asyncio.sleep(0)
        return answers

    flows = [asyncio.ensure_future(traffic()) for _ in range(4)]
    await node.control.load_model("add-one")  # a new instance of the first step swaps in
    await node.control.load_model("sum")
    results = await asyncio.gather(*flows)
    assert [outputs(a)["total"] for a in results[0]] == [[[4.0 * n + 4]] for n in range(30)]
    assert sum(len(r) for r in results) == 120
