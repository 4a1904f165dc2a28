"""The repository extension's load parameters (core/store/load_override.py): a ``config``
override in Triton's JSON form, files refused; REST in-process (gRPC: tests/compat)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from inferd.gateway.keys import Scope, new_key
from tests.compat.models import write_models
from tests.conftest import NodeFactory, asgi_client

ADMIN_KEY, ADMIN_ENTRY = new_key("ops", Scope.ADMIN)


@pytest.fixture
async def client(tmp_path: Path, node_factory: NodeFactory) -> AsyncIterator[httpx.AsyncClient]:
    repo = write_models(tmp_path, "simple")
    node = node_factory(repo, server={"api_keys": [ADMIN_ENTRY.line()]})
    async with await asgi_client(node) as c:
        c.headers["authorization"] = f"Bearer {ADMIN_KEY}"
        yield c


def load(config: object = None, **files: str) -> dict[str, object]:
    parameters: dict[str, object] = {f"file:{k}": v for k, v in files.items()}
    if config is not None:
        parameters["config"] = config if isinstance(config, str) else json.dumps(config)
    return {"parameters": parameters}


async def test_a_config_override_replaces_model_yamls_settings(client: httpx.AsyncClient) -> None:
    before = (await client.get("/v2/models/simple/config")).json()
    assert before["max_batch_size"] == 8
    override = {
        "max_batch_size": 4,
        "input": [
            {"name": "INPUT0", "data_type": "TYPE_INT32", "dims": [16]},
            {"name": "INPUT1", "data_type": "TYPE_INT32", "dims": [16]},
        ],
        "dynamic_batching": {"max_queue_delay_microseconds": 500},
        "instance_group": [{"count": 2, "kind": "KIND_CPU"}],
    }
    answer = await client.post("/v2/repository/models/simple/load", json=load(override))
    assert answer.status_code == 200, answer.text
    after = (await client.get("/v2/models/simple/config")).json()
    assert after["max_batch_size"] == 4
    assert after["instance_group"] == [{"count": 2, "kind": "KIND_CPU"}]
    assert after["dynamic_batching"]["max_queue_delay_microseconds"] == 500
    # A load without the override reads model.yaml again.
    assert (await client.post("/v2/repository/models/simple/load")).status_code == 200
    assert (await client.get("/v2/models/simple/config")).json()["max_batch_size"] == 8


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (load(None, **{"1/model.py": "eA=="}), "files cannot be sent with a load"),
        ({"parameters": {"colour": "red"}}, "load parameter(s) ['colour'] are not supported"),
        (load("{not json"), "is not JSON"),
        (load({"optimization": {}}), "field(s) ['optimization'] are not supported"),
        (load({"name": "other"}), "name 'other' is not the model's 'simple'"),
        (load({"backend": "onnx"}), "backend 'onnx' is not the model's (['python'])"),
        (load({"max_batch_size": -1}), "config override: max_batch_size"),
        (load({"instance_group": [{"count": 1, "gpus": [0]}]}), "['gpus'] are not supported"),
        ({"config": "{}"}, "the load request is"),
    ],
)
async def test_bad_loads_are_refused(
    client: httpx.AsyncClient, body: dict[str, object], message: str
) -> None:
    answer = await client.post("/v2/repository/models/simple/load", json=body)
    assert answer.status_code == 400
    assert message in answer.json()["error"]
    # The model serves on, as before.
    assert (await client.get("/v2/models/simple/ready")).status_code == 200
