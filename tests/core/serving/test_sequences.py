"""Sequence batching (core/serving/sequences.py) over REST, in-process: controls, ids as numbers
and strings, implicit state, idle release and the errors."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2

from inferd.core.node import Node
from inferd.core.serving.sequences import Sequences
from inferd.core.store.sequence_config import SequenceBatchingConfig
from inferd.types import TensorSpec
from tests.compat.models import write_models
from tests.conftest import NodeFactory, asgi_client, until


@pytest.fixture
async def served(
    tmp_path: Path, node_factory: NodeFactory
) -> AsyncIterator[tuple[Node, httpx.AsyncClient]]:
    repo = write_models(tmp_path, "simple", "accumulate", "accumulate_string", "sequence_state")
    node = node_factory(repo)
    async with await asgi_client(node) as client:
        yield node, client


def body(value: int, **parameters: Any) -> dict[str, Any]:
    return {
        "inputs": [{"name": "INPUT", "datatype": "INT32", "shape": [1, 1], "data": [value]}],
        "parameters": parameters,
    }


async def send(
    client: httpx.AsyncClient, model: str, value: int, **parameters: Any
) -> httpx.Response:
    return await client.post(f"/v2/models/{model}/infer", json=body(value, **parameters))


async def total(client: httpx.AsyncClient, model: str, value: int, **parameters: Any) -> int:
    answer = await send(client, model, value, **parameters)
    assert answer.status_code == 200, answer.text
    result: int = answer.json()["outputs"][0]["data"][0]
    return result


@pytest.mark.parametrize(
    ("model", "ids"),
    [
        ("accumulate", (1000, 1001)),
        ("accumulate_string", ("alpha", "beta")),
        ("sequence_state", (7, "seven")),
    ],
)
async def test_interleaved_sequences_keep_their_own_totals(
    served: tuple[Node, httpx.AsyncClient], model: str, ids: tuple[Any, Any]
) -> None:
    _, client = served
    a, b = ids
    assert await total(client, model, 11, sequence_id=a, sequence_start=True) == 11
    assert await total(client, model, -11, sequence_id=b, sequence_start=True) == -11
    assert await total(client, model, 7, sequence_id=a) == 18
    assert await total(client, model, -7, sequence_id=b) == -18
    assert await total(client, model, 5, sequence_id=a, sequence_end=True) == 23
    assert await total(client, model, -5, sequence_id=b, sequence_end=True) == -23
    # Ended: the id can start again, from zero.
    assert await total(client, model, 1, sequence_id=a, sequence_start=True, sequence_end=True) == 1


async def test_errors(served: tuple[Node, httpx.AsyncClient]) -> None:
    _, client = served
    cases = [
        (send(client, "accumulate", 1), 400, "send parameter sequence_id"),
        (
            send(client, "accumulate", 1, sequence_id=5),
            400,
            "sequence 5 of model 'accumulate' is not live",
        ),
        (
            send(client, "accumulate", 1, sequence_id=-1, sequence_start=True),
            400,
            "non-negative integer",
        ),
        (
            send(client, "accumulate", 1, sequence_id="x", sequence_start=True),
            400,
            "takes numeric sequence ids",
        ),
        (
            send(client, "accumulate", 1, sequence_id=3, sequence_start=1),
            400,
            "must be true or false",
        ),
    ]
    for call, status, message in cases:
        answer = await call
        assert answer.status_code == status, answer.text
        assert message in answer.json()["error"]
    assert await total(client, "accumulate", 1, sequence_id=1, sequence_start=True) == 1
    again = await send(client, "accumulate", 1, sequence_id=1, sequence_start=True)
    assert again.status_code == 400 and "is live already" in again.json()["error"]
    # Two slots (max_batch_size 2, one instance): a third live sequence is refused.
    assert await total(client, "accumulate", 1, sequence_id=2, sequence_start=True) == 1
    full = await send(client, "accumulate", 1, sequence_id=3, sequence_start=True)
    assert full.status_code == 429 and "sequence slots are taken" in full.json()["error"]
    rows = await client.post(
        "/v2/models/accumulate/infer",
        json={
            "inputs": [{"name": "INPUT", "datatype": "INT32", "shape": [2, 1], "data": [1, 2]}],
            "parameters": {"sequence_id": 1},
        },
    )
    assert rows.status_code == 400 and "one row" in rows.json()["error"]
    plain = await client.post(
        "/v2/models/simple/infer",
        json={
            "inputs": [
                {"name": n, "datatype": "INT32", "shape": [1, 16], "data": [0] * 16}
                for n in ("INPUT0", "INPUT1")
            ],
            "parameters": {"sequence_id": 1, "sequence_start": True},
        },
    )
    assert plain.status_code == 400 and "does not batch sequences" in plain.json()["error"]


async def test_idle_sequences_are_released(
    served: tuple[Node, httpx.AsyncClient],
) -> None:
    node, client = served
    sequences = node.router.named("sequence_state").sequences
    assert sequences is not None
    assert await total(client, "sequence_state", 3, sequence_id=9, sequence_start=True) == 3
    assert sequences.live == 1
    await until(lambda: sequences.live == 0, 5, "the idle sequence to be released")
    gone = await send(client, "sequence_state", 1, sequence_id=9)
    assert gone.status_code == 400 and "idle for over 500000" in gone.json()["error"]


async def test_oldest_limits_live_sequences(
    served: tuple[Node, httpx.AsyncClient],
) -> None:
    _, client = served
    for sid in (1, 2, 3):
        assert (
            await total(client, "sequence_state", sid, sequence_id=sid, sequence_start=True) == sid
        )
    full = await send(client, "sequence_state", 1, sequence_id=4, sequence_start=True)
    assert full.status_code == 429 and "max_candidate_sequences" in full.json()["error"]


async def test_config_reports_sequence_batching(
    served: tuple[Node, httpx.AsyncClient],
) -> None:
    _, client = served
    doc = (await client.get("/v2/models/accumulate/config")).json()
    config = json_format.ParseDict(doc, model_config_pb2.ModelConfig())
    assert config.WhichOneof("scheduling_choice") == "sequence_batching"
    assert config.sequence_batching.WhichOneof("strategy_choice") == "direct"
    kinds = [c.control[0].kind for c in config.sequence_batching.control_input]
    assert kinds == [
        model_config_pb2.ModelSequenceBatching.Control.CONTROL_SEQUENCE_START,
        model_config_pb2.ModelSequenceBatching.Control.CONTROL_SEQUENCE_READY,
        model_config_pb2.ModelSequenceBatching.Control.CONTROL_SEQUENCE_CORRID,
    ]


def batcher(strategy: str, seen: list[dict[str, Any]], instances: int = 1) -> Sequences:
    """A sequence batcher whose model records what it is given and echoes INPUT."""
    config = SequenceBatchingConfig.model_validate(
        {
            "strategy": strategy,
            "control_input": [
                {
                    "name": "S",
                    "control": [{"kind": "CONTROL_SEQUENCE_START", "int32_false_true": [0, 1]}],
                },
                {
                    "name": "R",
                    "control": [
                        {"kind": "CONTROL_SEQUENCE_READY", "bool_false_true": [False, True]}
                    ],
                },
                {
                    "name": "C",
                    "control": [{"kind": "CONTROL_SEQUENCE_CORRID", "data_type": "TYPE_UINT64"}],
                },
            ],
        }
    )

    def run(arrays: dict[str, np.ndarray], states: Any) -> dict[str, np.ndarray]:
        seen.append({**{k: v.tolist() for k, v in arrays.items()}, "thread": threading.get_ident()})
        return {"OUTPUT": arrays["INPUT"]}

    spec = TensorSpec("OUTPUT", "INT32", (-1, 1))
    return Sequences(
        config,
        model="m",
        batching=True,
        max_batch_size=4,
        instances=instances,
        outputs=(spec,),
        run=run,
    )


def row(value: int) -> dict[str, np.ndarray]:
    return {"INPUT": np.array([[value]], dtype=np.int32)}


async def test_direct_gives_each_sequence_its_slot_and_pads_the_rest() -> None:
    seen: list[dict[str, Any]] = []
    sequences = batcher("direct", seen)
    sequences.start()
    try:
        await sequences.submit({"sequence_id": 5, "sequence_start": True}, row(1), None)
        await sequences.submit({"sequence_id": 6, "sequence_start": True}, row(2), None)
        out = await sequences.submit({"sequence_id": 6}, row(3), None)
    finally:
        await sequences.close()
    assert out["OUTPUT"].tolist() == [[3]]
    # Sequence 6 holds slot 1: its request is row 1, slot 0 is padding with READY false.
    assert seen[-1]["INPUT"] == [[0], [3]]
    assert seen[-1]["R"] == [[False], [True]]
    assert seen[-1]["S"] == [[0], [0]]
    assert seen[-1]["C"] == [[0], [6]]
    assert seen[1]["S"] == [[0], [1]]


async def test_oldest_batches_in_arrival_order_on_one_instance_per_sequence() -> None:
    seen: list[dict[str, Any]] = []
    sequences = batcher("oldest", seen, instances=2)
    sequences.start()
    try:
        await sequences.submit({"sequence_id": 1, "sequence_start": True}, row(1), None)
        await sequences.submit({"sequence_id": 2, "sequence_start": True}, row(2), None)
        for _ in range(3):
            await asyncio.gather(
                sequences.submit({"sequence_id": 1}, row(10), None),
                sequences.submit({"sequence_id": 2}, row(20), None),
            )
    finally:
        await sequences.close()
    threads: dict[int, set[int]] = {}
    for call in seen:
        for corrid in call["C"]:
            threads.setdefault(corrid[0], set()).add(call["thread"])
        assert all(r == [True] for r in call["R"])  # no padding
    # Each sequence ran on one instance thread only, and the two on different ones.
    assert all(len(t) == 1 for t in threads.values())
    assert threads[1] != threads[2]
