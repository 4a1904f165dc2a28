"""The dashboard in-process: its files, its state document part by part for each kind of
caller, the setting that turns it off, and counters that move with traffic."""

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
KEYS = [ADMIN.line(), INFER.line()]


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return write_model(tmp_path, "m", fail_every=0)


async def make(node_factory: NodeFactory, repo: Path, **server: Any) -> httpx.AsyncClient:
    return await asgi_client(node_factory(repo, server=server))


@pytest.fixture
async def open_client(repo: Path, node_factory: NodeFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with await make(node_factory, repo) as client:
        yield client


@pytest.fixture
async def keyed(repo: Path, node_factory: NodeFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with await make(node_factory, repo, api_keys=KEYS, require_api_key=True) as client:
        yield client


async def test_the_page_and_its_files(open_client: httpx.AsyncClient) -> None:
    page = await open_client.get("/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/dashboard/dashboard.js"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN
    script = await open_client.get("/dashboard/dashboard.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "/dashboard/state" in script.text
    style = await open_client.get("/dashboard/dashboard.css")
    assert style.headers["content-type"].startswith("text/css")
    missing = await open_client.get("/dashboard/secrets.txt")
    assert missing.status_code == 404
    assert "not a file of the dashboard" in missing.json()["error"]


async def test_an_open_server_shows_models_and_live_figures(
    open_client: httpx.AsyncClient,
) -> None:
    doc = (await open_client.get("/dashboard/state")).json()
    assert doc["parts"] == ["models", "live"]  # no admin key configured: no control part
    assert doc["server"]["ready"] is True
    (model,) = doc["models"]
    assert model["name"] == "m"
    assert [(v["version"], v["state"]) for v in model["versions"]] == [
        ("1", "READY"),
        ("2", "READY"),
    ]
    assert "traffic" not in model and "rollout" not in model
    assert len(doc["latency_buckets"]) + 1 == len(doc["live"]["versions"][0]["latency"])


async def test_counters_move_with_traffic(open_client: httpx.AsyncClient) -> None:
    def version_one(doc: dict[str, Any]) -> dict[str, Any]:
        return next(v for v in doc["live"]["versions"] if (v["model"], v["version"]) == ("m", "1"))

    before = version_one((await open_client.get("/dashboard/state")).json())
    for _ in range(3):
        answer = await open_client.post("/v2/models/m/infer", json=BODY)
        assert answer.status_code == 200
    after = version_one((await open_client.get("/dashboard/state")).json())
    assert after["requests"].get("ok", 0) == before["requests"].get("ok", 0) + 3
    assert sum(after["latency"]) == sum(before["latency"]) + 3
    assert after["batch"]["count"] >= before["batch"]["count"] + 3


async def test_keys_on_the_state_needs_a_key(keyed: httpx.AsyncClient) -> None:
    refused = await keyed.get("/dashboard/state")
    assert refused.status_code == 401
    assert "m" not in refused.json()  # the error only
    page = await keyed.get("/dashboard")  # the page itself holds no data
    assert page.status_code == 200 and '"m"' not in page.text


async def test_each_key_sees_what_its_scope_may_read(keyed: httpx.AsyncClient) -> None:
    infer = (await keyed.get("/dashboard/state", headers=bearer(INFER_KEY))).json()
    assert infer["parts"] == ["models", "live"]
    assert "traffic" not in infer["models"][0]
    admin = (await keyed.get("/dashboard/state", headers=bearer(ADMIN_KEY))).json()
    assert admin["parts"] == ["models", "live", "control"]
    model = admin["models"][0]
    assert (model["traffic"], model["shadow"], model["rollout"]) == ({"1": 100}, None, None)


async def test_metrics_behind_a_key_hide_live_figures(
    repo: Path, node_factory: NodeFactory
) -> None:
    async with await make(node_factory, repo, api_keys=KEYS, metrics_require_key=True) as client:
        anonymous = (await client.get("/dashboard/state")).json()
        keyed = (await client.get("/dashboard/state", headers=bearer(INFER_KEY))).json()
    assert anonymous["parts"] == ["models"] and "live" not in anonymous
    assert keyed["parts"] == ["models", "live"]


async def test_a_running_rollout_and_a_shadow_are_shown_to_admins(
    repo: Path, node_factory: NodeFactory
) -> None:
    async with await make(node_factory, repo, allow_local_admin=True) as client:
        started = await client.put(
            "/v2/models/m/rollout", json={"to": "2", "step_interval_s": 3600}
        )
        assert started.status_code == 200, started.text
        shadowed = await client.put("/v2/models/m/shadow", json={"version": "2", "fraction": 0.5})
        assert shadowed.status_code == 200, shadowed.text
        doc = (await client.get("/dashboard/state")).json()
    assert doc["parts"] == ["models", "live", "control"]
    model = doc["models"][0]
    assert model["traffic"] == {"1": 95, "2": 5}
    assert model["shadow"] == {"version": "2", "fraction": 0.5}
    rollout = model["rollout"]
    assert (rollout["state"], rollout["canary"], rollout["step"], rollout["percent"]) == (
        "running",
        "2",
        1,
        5,
    )
    assert rollout["last_decision"]["decision"] == "start"
    assert set(rollout["window"]) >= {"seconds", "stable", "canary"}


async def test_the_setting_turns_it_off(repo: Path, node_factory: NodeFactory) -> None:
    async with await make(node_factory, repo, dashboard=False) as client:
        for path in ("/dashboard", "/dashboard/state", "/dashboard/dashboard.js"):
            assert (await client.get(path)).status_code == 404, path
