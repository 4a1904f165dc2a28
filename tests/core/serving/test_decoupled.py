"""Streaming (decoupled) models through the service, in-process: partials, back-pressure,
cancellation, deadlines and failures."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inferd.core.messages import InferRequest, InferResponse
from inferd.core.node import Node
from inferd.errors import DeadlineExceeded, InternalError, InvalidArgument
from inferd.types import Tensor
from tests.conftest import NodeFactory, until
from tests.streaming import steps


def count_request(
    tag: str, n: int, delay_ms: int = 0, model: str = "count", **parameters: Any
) -> InferRequest:
    return InferRequest(
        model=model,
        inputs=[
            Tensor("n", "INT32", np.array([n], dtype=np.int32)),
            Tensor("delay_ms", "INT32", np.array([delay_ms], dtype=np.int32)),
            Tensor("tag", "BYTES", np.array([tag.encode()], dtype=object)),
        ],
        parameters=parameters,
    )


@pytest.fixture
async def node(stream_repo: Path, node_factory: NodeFactory) -> Node:
    made = node_factory(stream_repo, stream={"max_buffered_responses": 2})
    await made.start()
    return made


def values(responses: list[InferResponse]) -> list[int]:
    return [int(r.outputs[0].data[0]) for r in responses if r.outputs]


@pytest.mark.parametrize("model", ["count", "acount"])
async def test_partials_then_a_final_response(node: Node, model: str) -> None:
    tag = f"partials-{model}"
    responses = [
        r async for r in node.service.stream(count_request(tag, 5, model=model), empty_final=True)
    ]
    assert values(responses) == [0, 1, 2, 3, 4]
    assert [r.final for r in responses] == [False] * 5 + [True]
    assert responses[-1].outputs == []
    assert all(r.model == model and r.version == "1" for r in responses)
    assert steps(node.settings.models.repository, tag) == ["0", "1", "2", "3", "4", "closed"]


async def test_the_empty_final_response_is_sent_only_when_asked(node: Node) -> None:
    """The one place that decides how a stream ends: SSE and gRPC without
    ``triton_enable_empty_final_response`` get the partials only."""
    tag = "no-empty-final"
    responses = [r async for r in node.service.stream(count_request(tag, 3), empty_final=False)]
    assert values(responses) == [0, 1, 2]
    assert [r.final for r in responses] == [False] * 3
    stats = node.catalog.model_stats("count")["model_stats"][0]["inference_stats"]
    assert stats["success"]["count"] == 1  # counted as answered all the same


async def test_a_model_that_answers_once_has_one_response(node: Node) -> None:
    request = InferRequest(model="busy", inputs=[Tensor("x", "FP32", np.ones((1, 1), np.float32))])
    responses = [r async for r in node.service.responses(request, empty_final=True)]
    assert len(responses) == 1
    assert responses[0].final


async def test_each_call_refuses_the_other_kind(node: Node) -> None:
    with pytest.raises(InvalidArgument, match="streams its outputs"):
        await node.service.infer(count_request("refused", 1))
    request = InferRequest(model="busy", inputs=[Tensor("x", "FP32", np.ones((1, 1), np.float32))])
    with pytest.raises(InvalidArgument, match="does not stream its outputs"):
        node.service.stream(request, empty_final=True)
    with pytest.raises(InvalidArgument, match="missing inputs"):
        node.service.stream(InferRequest(model="count", inputs=[]), empty_final=True)


async def test_a_slow_reader_holds_the_generator_back(node: Node) -> None:
    root = node.settings.models.repository
    partials = node.service.stream(count_request("slow-reader", 1000), empty_final=True)
    first = await anext(partials)
    assert first.outputs[0].data[0] == 0
    # The generator runs ahead of the reader by the buffer (2 partials), no further.
    await until(lambda: len(steps(root, "slow-reader")) >= 3, what="the buffer to fill")
    await asyncio.sleep(0.3)  # time in which an unbounded producer would run on
    assert len(steps(root, "slow-reader")) == 3
    await partials.aclose()
    await until(lambda: "closed" in steps(root, "slow-reader"), what="the generator to close")
    assert steps(root, "slow-reader") == ["0", "1", "2", "closed"]


async def test_a_cancelled_consumer_stops_the_generator(node: Node) -> None:
    root = node.settings.models.repository

    async def consume() -> None:
        async for _ in node.service.stream(
            count_request("cancelled", 1000, delay_ms=10), empty_final=True
        ):
            pass

    task = asyncio.ensure_future(consume())
    await until(lambda: len(steps(root, "cancelled")) >= 3, what="a few steps")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await until(lambda: "closed" in steps(root, "cancelled"), what="the generator to close")
    assert len(steps(root, "cancelled")) < 50


async def test_the_deadline_ends_a_stream(node: Node) -> None:
    root = node.settings.models.repository
    request = count_request("deadline", 1000, delay_ms=20, timeout=300_000)  # 0.3 s
    received: list[InferResponse] = []
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        async for response in node.service.stream(request, empty_final=True):
            received.append(response)
    assert time.monotonic() - started < 5
    assert 0 < len(received) < 1000
    await until(lambda: "closed" in steps(root, "deadline"), what="the generator to close")


async def test_a_failure_after_partials_reaches_the_caller(node: Node) -> None:
    received: list[InferResponse] = []
    with pytest.raises(InternalError, match=r"internal error \(request id "):
        async for response in node.service.stream(count_request("fails", -3), empty_final=True):
            received.append(response)
    assert values(received) == [0, 1, 2]


async def test_streams_are_counted_in_statistics(node: Node) -> None:
    async for _ in node.service.stream(count_request("stats", 2), empty_final=True):
        pass
    stats = node.catalog.model_stats("count")["model_stats"][0]["inference_stats"]
    assert stats["success"]["count"] >= 1
