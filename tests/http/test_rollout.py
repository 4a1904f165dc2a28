"""The rollout routes in-process: validation, conflicts, abort, admin scope, and the
outcomes the service records for a model under rollout."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from inferd.gateway.keys import Scope, new_key
from tests.conftest import NodeFactory, asgi_client
from tests.rollout_models import BODY, write_model

ADMIN_KEY, ADMIN = new_key("ops", Scope.ADMIN)
INFER_KEY, INFER = new_key("app", Scope.INFER)
#: Long steps: nothing moves while a test runs.
PLAN = {"to": "2", "step_interval_s": 3600}
URL = "/v2/models/m/rollout"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return write_model(tmp_path, "m", fail_every=2)


@pytest.fixture
async def client(repo: Path, node_factory: NodeFactory) -> AsyncIterator[httpx.AsyncClient]:
    node = node_factory(repo, server={"allow_local_admin": True})
    async with await asgi_client(node) as made:
        yield made


async def test_start_show_and_abort(client: httpx.AsyncClient) -> None:
    started = await client.put(URL, json=PLAN)
    assert started.status_code == 200, started.text
    view = started.json()
    assert (view["state"], view["stable"], view["canary"], view["step"], view["split"]) == (
        "running",
        "1",
        "2",
        1,
        {"1": 95, "2": 5},
    )
    assert view["plan"] == {
        "to": "2",
        "steps": [5, 25, 50, 100],
        "step_interval_s": 3600.0,
        "max_error_rate": 0.01,
        "max_p99_ratio": 1.5,
        "min_requests": 200,
    }
    assert (await client.get(URL)).json()["decisions"] == view["decisions"]
    aborted = await client.delete(URL)
    assert aborted.status_code == 200
    assert (aborted.json()["state"], aborted.json()["split"]) == ("aborted", {"1": 100})
    assert aborted.json()["decisions"][-1]["reason"] == "stopped by request"
    again = await client.delete(URL)  # ended: shown as it ended
    assert (again.status_code, again.json()) == (200, aborted.json())


async def test_the_service_records_each_version_and_counts_only_its_failures(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.put(URL, json=PLAN)).status_code == 200
    for _ in range(4):  # version 2 fails every 2nd request
        await client.post("/v2/models/m/versions/2/infer", json=BODY)
    for _ in range(3):
        await client.post("/v2/models/m/versions/1/infer", json=BODY)
    bad = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
    assert (await client.post("/v2/models/m/versions/2/infer", json=bad)).status_code == 400
    window = (await client.get(URL)).json()["window"]
    assert (window["canary"]["requests"], window["canary"]["errors"]) == (4, 2)
    assert (window["stable"]["requests"], window["stable"]["errors"]) == (3, 0)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{", 400, "malformed JSON"),
        (b'{"to": "2", "steps": [5, 50]}', 400, "rollout field 'steps' must be"),
        (b'{"to": "2", "min_requests": -1}', 400, "rollout field 'min_requests' must be"),
        (b'{"to": "3"}', 400, "version '3' of model 'm' is not served; serving ['1', '2']"),
        (b'{"to": "1"}', 400, "version '1' of model 'm' already takes all the traffic"),
    ],
)
async def test_a_bad_plan_is_refused(
    client: httpx.AsyncClient, body: bytes, status: int, message: str
) -> None:
    answer = await client.put(URL, content=body)
    assert answer.status_code == status
    assert message in answer.json()["error"]
    assert (await client.get(URL)).status_code == 404


async def test_a_second_rollout_conflicts(client: httpx.AsyncClient) -> None:
    assert (await client.put(URL, json=PLAN)).status_code == 200
    answer = await client.put(URL, json=PLAN)
    assert answer.status_code == 409
    assert answer.json()["error"] == (
        "a rollout of model 'm' to version '2' is running; DELETE /v2/models/m/rollout stops it"
    )


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_an_unknown_model_is_not_found(client: httpx.AsyncClient, method: str) -> None:
    answer = await client.request(method, "/v2/models/nope/rollout", json=PLAN)
    assert answer.status_code == 404
    assert answer.json()["error"].startswith("model 'nope' is not known")


async def test_no_rollout_yet_is_not_found(client: httpx.AsyncClient) -> None:
    answer = await client.get(URL)
    assert answer.status_code == 404
    assert answer.json()["error"] == "model 'm' has had no rollout since the server started"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("rollout", PLAN),
        ("traffic", {"traffic": {"1": 50, "2": 50}}),
        ("shadow", {"version": "2", "fraction": 0.5}),
    ],
)
async def test_several_workers_refuse_routing_changes_at_run_time(
    repo: Path, node_factory: NodeFactory, path: str, body: dict[str, object]
) -> None:
    node = node_factory(repo, server={"allow_local_admin": True, "workers": 2})
    async with await asgi_client(node) as client:
        before = (await client.get("/v2/models/m/traffic")).json()
        answer = await client.put(f"/v2/models/m/{path}", json=body)
        assert answer.status_code == 400
        assert "runs 2 worker processes (server.workers)" in answer.json()["error"]
        assert "needs one process (set it in model.yaml instead)" in answer.json()["error"]
        assert (await client.get("/v2/models/m/traffic")).json() == before


@pytest.mark.parametrize(("key", "status"), [(None, 401), (INFER_KEY, 403), (ADMIN_KEY, 404)])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_every_rollout_route_needs_the_admin_scope(
    repo: Path, node_factory: NodeFactory, method: str, key: str | None, status: int
) -> None:
    keys: dict[str, Any] = {"api_keys": [ADMIN.line(), INFER.line()], "require_api_key": True}
    node = node_factory(repo, server=keys)
    headers = {} if key is None else {"X-API-Key": key}
    async with await asgi_client(node) as client:
        answer = await client.request(method, "/v2/models/nope/rollout", json=PLAN, headers=headers)
    assert answer.status_code == status, answer.text
