"""Shadow traffic in the core: sampling, the bound, outcomes, examples, and the service."""

from __future__ import annotations

import asyncio
import random
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from inferd.core.messages import InferRequest
from inferd.core.store.model_config import ShadowConfig
from inferd.core.traffic.shadow import EXAMPLE_ELEMENTS, GATHER_S, Arrays, Shadows
from inferd.errors import ConfigError, ResourceExhausted, Unavailable
from inferd.http.app import create_app
from inferd.metrics import Metrics
from inferd.types import Tensor
from tests.conftest import NodeFactory
from tests.core.store.test_repository import make_model

X = {"x": np.asarray([[1.0, 2.0]], dtype=np.float32)}


def outputs(*row: float) -> list[Tensor]:
    return [Tensor("y", "FP32", np.asarray([row], dtype=np.float32))]


class FakeShadow:
    """A shadow version: answers ``answer`` (or raises ``error``) once ``gate`` is set."""

    def __init__(self, answer: list[Tensor], error: Exception | None = None) -> None:
        self.answer = {t.name: t for t in answer}
        self.error = error
        self.gate = asyncio.Event()
        self.gate.set()
        self.calls: list[tuple[str, str, Arrays]] = []

    async def __call__(self, model: str, version: str, arrays: Arrays) -> dict[str, Tensor]:
        self.calls.append((model, version, arrays))
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        return self.answer


def config(**fields: Any) -> ShadowConfig:
    return ShadowConfig.model_validate({"version": "2", "fraction": 1.0, **fields})


async def test_every_answer_is_mirrored_at_fraction_1_and_agreement_counted() -> None:
    run = FakeShadow(outputs(1.0, 2.0))
    shadow = Shadows(run, None).set("m", config(), "api")
    assert shadow is not None
    for _ in range(3):
        shadow.offer("1", X, outputs(1.0, 2.0), "r")
    await shadow.settle()
    state = shadow.state()
    assert state["counts"] == {"agree": 3, "disagree": 0, "dropped": 0, "error": 0}
    assert state["recent"] == []
    assert [(m, v) for m, v, _ in run.calls] == [("m", "2")] * 3


async def test_mirrored_requests_gather_and_reach_the_shadow_version_together() -> None:
    run = FakeShadow(outputs(1.0, 2.0))
    loop = asyncio.get_running_loop()
    released_at: list[float] = []

    async def timed(model: str, version: str, arrays: Arrays) -> dict[str, Tensor]:
        released_at.append(loop.time())
        return await run(model, version, arrays)

    shadow = Shadows(timed, None).set("m", config(), "api")
    assert shadow is not None
    offered_at = loop.time()
    for _ in range(4):
        shadow.offer("1", X, outputs(1.0, 2.0), "r")
    await asyncio.sleep(0)  # the mirrored requests start, and wait for their release
    assert run.calls == []
    await shadow.settle()
    assert len(run.calls) == 4
    # Released together, not before the gathering time.
    assert min(released_at) - offered_at >= GATHER_S - 0.002


async def test_the_shadow_versions_own_answers_are_not_mirrored() -> None:
    run = FakeShadow(outputs(1.0))
    shadow = Shadows(run, None).set("m", config(), "api")
    assert shadow is not None
    shadow.offer("2", X, outputs(1.0), None)
    await shadow.settle()
    assert (run.calls, shadow.state()["counts"]["agree"]) == ([], 0)


async def test_the_fraction_is_sampled_with_random() -> None:
    run = FakeShadow(outputs(1.0))
    shadow = Shadows(run, None).set("m", config(fraction=0.2, max_in_flight=1024), "api")
    assert shadow is not None
    random.seed(20261129)
    expected = sum(random.random() < 0.2 for _ in range(1000))
    random.seed(20261129)
    for _ in range(1000):
        shadow.offer("1", X, outputs(1.0), None)
    await shadow.settle()
    assert len(run.calls) == expected
    assert 150 < expected < 250
    none = Shadows(run, None).set("n", config(fraction=0.0), "api")
    assert none is not None
    none.offer("1", X, outputs(1.0), None)
    assert none.in_flight == 0


async def test_offers_past_the_bound_are_dropped_and_counted() -> None:
    run = FakeShadow(outputs(1.0))
    run.gate.clear()  # the shadow version blocks
    metrics = Metrics()
    shadow = Shadows(run, metrics).set("m", config(max_in_flight=2), "api")
    assert shadow is not None
    for _ in range(5):
        shadow.offer("1", X, outputs(1.0), None)
    await asyncio.sleep(0)  # the two tasks start and block
    assert shadow.in_flight == 2
    assert shadow.state()["counts"] == {"agree": 0, "disagree": 0, "dropped": 3, "error": 0}
    run.gate.set()
    await shadow.settle()
    assert shadow.state()["counts"] == {"agree": 2, "disagree": 0, "dropped": 3, "error": 0}
    text = metrics.render().decode()
    assert 'inferd_shadow_requests_total{model="m",outcome="dropped",version="2"} 3.0' in text
    assert 'inferd_shadow_requests_total{model="m",outcome="agree",version="2"} 2.0' in text


async def test_a_full_shadow_queue_is_a_drop_and_a_failure_an_error() -> None:
    full = FakeShadow([], ResourceExhausted("queue full"))
    shadow = Shadows(full, None).set("m", config(), "api")
    assert shadow is not None
    shadow.offer("1", X, outputs(1.0), None)
    await shadow.settle()
    assert shadow.state()["counts"]["dropped"] == 1
    failing = FakeShadow([], Unavailable("model 'm' version '2' is not ready"))
    shadow = Shadows(failing, None).set("m", config(), "api")
    assert shadow is not None
    shadow.offer("1", X, outputs(1.0), None)
    await shadow.settle()
    state = shadow.state()
    assert (state["counts"]["error"], state["last_error"]) == (
        1,
        "model 'm' version '2' is not ready",
    )


async def test_disagreements_keep_a_bounded_ring_of_elided_examples() -> None:
    run = FakeShadow(outputs(0.0, 1.0))
    shadow = Shadows(run, Metrics()).set("m", config(examples=2), "api")
    assert shadow is not None
    big = {"x": np.arange(100, dtype=np.float32).reshape(1, 100)}
    for n in range(5):
        shadow.offer("1", big, outputs(1.0, 0.0), f"req-{n}")
    await shadow.settle()
    state = shadow.state()
    assert state["counts"]["disagree"] == 5
    assert state["disagreements"] == {"argmax": 5}
    assert [e["request_id"] for e in state["recent"]] == ["req-3", "req-4"]
    example = state["recent"][-1]
    assert example["inputs"] == [
        {
            "name": "x",
            "datatype": "FP32",
            "shape": [1, 100],
            "data": list(range(EXAMPLE_ELEMENTS)),
            "elided": 100 - EXAMPLE_ELEMENTS,
        }
    ]
    (output,) = example["outputs"]
    assert (output["reason"], output["max_abs"], output["argmax_agreement"]) == ("argmax", 1.0, 0.0)
    assert (output["primary"]["data"], output["shadow"]["data"]) == ([1.0, 0.0], [0.0, 1.0])


async def test_stopping_a_shadow_cancels_its_requests_and_forgets_its_series() -> None:
    run = FakeShadow(outputs(1.0))
    run.gate.clear()
    metrics = Metrics()
    shadows = Shadows(run, metrics)
    shadow = shadows.set("m", config(), "api")
    assert shadow is not None
    shadow.offer("1", X, outputs(1.0), None)
    await asyncio.sleep(0)
    assert shadow.in_flight == 1
    assert shadows.set("m", None, "api") is None
    await shadow.settle()
    assert shadow.in_flight == 0
    assert shadow.state()["counts"]["agree"] == 0
    assert "inferd_shadow_requests_total{" not in metrics.render().decode()
    assert shadows.get("m") is None


async def test_a_new_fraction_for_the_same_version_keeps_the_metric_series() -> None:
    run = FakeShadow(outputs(1.0))
    metrics = Metrics()
    shadows = Shadows(run, metrics)
    first = shadows.set("m", config(), "model.yaml")
    assert first is not None
    first.offer("1", X, outputs(1.0), None)
    await first.settle()
    second = shadows.set("m", config(fraction=0.5), "api")
    assert second is not None
    assert second.state()["counts"]["agree"] == 0  # counts start over
    assert (second.state()["source"], second.state()["fraction"]) == ("api", 0.5)
    text = metrics.render().decode()
    assert 'inferd_shadow_requests_total{model="m",outcome="agree",version="2"} 1.0' in text


# -- in the service ------------------------------------------------------------------------

#: Set by a test to let the blocking shadow version answer (it runs in this process).
GATE = threading.Event()
BLOCKING_MODEL = (
    "from tests.core.traffic.test_shadow import GATE\n"
    "class Model:\n"
    "    def predict(self, inputs):\n"
    "        GATE.wait(30)\n"
    "        return {'x': inputs['x'] * 2}\n"
)
DOUBLING_MODEL = (
    "class Model:\n    def predict(self, inputs):\n        return {'x': inputs['x'] * 2}\n"
)


def two_versions(root: Path, shadow_yaml: str, shadow_code: str) -> Path:
    """``m``: version 2 (latest, the primary) answers its input; version 1 runs
    ``shadow_code``. ``warmup: false``, so a blocking version loads."""
    folder = make_model(
        root, "m", ["1", "2"], f"version_policy: {{all: true}}\nwarmup: false\n{shadow_yaml}"
    )
    (folder / "1" / "model.py").write_text(shadow_code)
    return root


def infer_request(*values: float) -> InferRequest:
    return InferRequest("m", [Tensor("x", "FP32", np.asarray([values], dtype=np.float32))])


async def test_a_blocked_shadow_version_does_not_delay_the_primary(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    GATE.clear()
    node = node_factory(
        two_versions(tmp_path, "shadow: {version: 1, fraction: 1.0}\n", BLOCKING_MODEL)
    )
    await node.start()
    shadow = node.control.shadows.get("m")
    assert shadow is not None
    try:
        for n in range(1, 4):  # answered while the shadow version blocks
            response = await node.service.infer(infer_request(n, n))
            assert (response.version, response.outputs[0].data.tolist()) == ("2", [[n, n]])
        assert shadow.in_flight == 3
        assert shadow.state()["counts"] == {"agree": 0, "disagree": 0, "dropped": 0, "error": 0}
    finally:
        GATE.set()
    await shadow.settle()
    state = node.control.shadow_state("m")["shadow"]
    assert state["counts"]["disagree"] == 3  # version 1 doubles
    assert state["disagreements"] == {"values": 3}


async def test_cache_hits_are_not_mirrored(tmp_path: Path, node_factory: NodeFactory) -> None:
    yaml = "shadow: {version: '1', fraction: 1.0}\ncache: {enabled: true}\n"
    node = node_factory(two_versions(tmp_path, yaml, DOUBLING_MODEL))
    await node.start()
    for _ in range(3):
        await node.service.infer(infer_request(1, 1))
    shadow = node.control.shadows.get("m")
    assert shadow is not None
    await shadow.settle()
    assert shadow.state()["counts"]["disagree"] == 1  # the miss only


def test_a_shadow_version_the_policy_does_not_serve_is_a_config_error(tmp_path: Path) -> None:
    from inferd.core.store.repository import Repository

    make_model(tmp_path, "m", ["1", "2"], "shadow: {version: '1', fraction: 0.5}\n")
    with pytest.raises(ConfigError, match=r"shadow.version '1' is not a version the version"):
        Repository(tmp_path).read("m")


# -- the admin API (in-process ASGI) -------------------------------------------------------


async def admin_client(node: Any) -> httpx.AsyncClient:
    await node.start()
    transport = httpx.ASGITransport(app=create_app(node), client=("127.0.0.1", 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://inferd")


async def test_put_starts_changes_and_stops_the_shadow(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    node = node_factory(
        two_versions(tmp_path, "", DOUBLING_MODEL), server={"allow_local_admin": True}
    )
    async with await admin_client(node) as client:
        assert (await client.get("/v2/models/m/shadow")).json() == {"model": "m", "shadow": None}
        put = await client.put("/v2/models/m/shadow", json={"version": "1", "fraction": 1})
        assert put.status_code == 200
        shadow = put.json()["shadow"]
        assert (shadow["version"], shadow["fraction"], shadow["source"]) == ("1", 1.0, "api")
        answer = await client.post(
            "/v2/models/m/infer",
            json={"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [3, 4]}]},
        )
        assert answer.json()["outputs"][0]["data"] == [3, 4]  # the primary's, unchanged
        mirrored = node.control.shadows.get("m")
        assert mirrored is not None
        await mirrored.settle()
        got = (await client.get("/v2/models/m/shadow")).json()["shadow"]
        assert got["counts"]["disagree"] == 1
        (example,) = got["recent"]
        assert example["inputs"][0]["data"] == [3.0, 4.0]
        assert example["outputs"][0]["shadow"]["data"] == [6.0, 8.0]
        stop = await client.put("/v2/models/m/shadow", content=b"null")
        assert (stop.status_code, stop.json()) == (200, {"model": "m", "shadow": None})


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v2/models/nothing/shadow", {"version": "1", "fraction": 0.2}, 404, "not known"),
        (
            "/v2/models/m/shadow",
            {"version": "9", "fraction": 0.2},
            400,
            "does not serve version '9'",
        ),
        ("/v2/models/m/shadow", {"version": "1", "fraction": 1.5}, 400, "fraction"),
        ("/v2/models/m/shadow", {"version": "1", "fraction": -0.1}, 400, "fraction"),
        ("/v2/models/m/shadow", {"version": "1"}, 400, "fraction: Field required"),
        ("/v2/models/m/shadow", {"version": "1", "fraction": 0.2, "x": 1}, 400, "unknown key 'x'"),
        ("/v2/models/m/shadow", [1], 400, "the shadow is"),
    ],
)
async def test_put_refuses_what_it_cannot_do(
    tmp_path: Path,
    node_factory: NodeFactory,
    path: str,
    body: object,
    status: int,
    message: str,
) -> None:
    node = node_factory(
        two_versions(tmp_path, "", DOUBLING_MODEL), server={"allow_local_admin": True}
    )
    async with await admin_client(node) as client:
        answer = await client.put(path, json=body)
        assert answer.status_code == status
        assert message in answer.json()["error"]
        assert node.control.shadows.get("m") is None


async def test_the_shadow_api_needs_the_admin_scope(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    node = node_factory(two_versions(tmp_path, "", DOUBLING_MODEL))
    async with await admin_client(node) as client:
        assert (await client.get("/v2/models/m/shadow")).status_code == 403
        put = await client.put("/v2/models/m/shadow", json={"version": "1", "fraction": 1})
        assert put.status_code == 403
    assert node.control.shadows.get("m") is None


async def test_unloading_a_model_stops_its_shadow(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    yaml = "shadow: {version: '1', fraction: 0.5}\n"
    node = node_factory(two_versions(tmp_path, yaml, DOUBLING_MODEL))
    await node.start()
    assert node.control.shadow_state("m")["shadow"]["source"] == "model.yaml"
    await node.control.unload_model("m")
    assert node.control.shadow_state("m") == {"model": "m", "shadow": None}
    await node.control.load_model("m")
    assert node.control.shadow_state("m")["shadow"]["fraction"] == 0.5


async def test_answers_a_split_gives_the_shadow_version_are_not_mirrored(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    yaml = (
        "shadow: {version: '1', fraction: 1.0, max_in_flight: 1024}\ntraffic: {'1': 50, '2': 50}\n"
    )
    node = node_factory(two_versions(tmp_path, yaml, DOUBLING_MODEL))
    await node.start()
    answered = [(await node.service.infer(infer_request(1, 1))).version for _ in range(40)]
    shadow = node.control.shadows.get("m")
    assert shadow is not None
    await shadow.settle()
    assert shadow.state()["counts"]["disagree"] == answered.count("2")
    assert sum(shadow.state()["counts"].values()) == answered.count("2")


async def test_a_reload_goes_back_to_the_model_yaml_shadow(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    node = node_factory(
        two_versions(tmp_path, "shadow: {version: '1', fraction: 0.5}\n", DOUBLING_MODEL)
    )
    await node.start()
    node.control.set_shadow("m", {"version": "1", "fraction": 1.0})
    assert node.control.shadow_state("m")["shadow"]["source"] == "api"
    await node.control.load_model("m")
    state = node.control.shadow_state("m")["shadow"]
    assert (state["source"], state["fraction"]) == ("model.yaml", 0.5)


@pytest.mark.parametrize(
    ("yaml", "shadowed", "share"),
    [
        ("", "2", 100),  # the latest answers every request that names no version
        ("traffic: {'1': 50, '2': 50}\n", "1", 50),
        ("traffic: {'1': 100, '2': 0}\n", "2", 0),
        ("", "1", 0),
    ],
)
async def test_a_shadow_version_that_takes_primary_traffic_is_warned_and_shown(
    tmp_path: Path,
    node_factory: NodeFactory,
    caplog: pytest.LogCaptureFixture,
    yaml: str,
    shadowed: str,
    share: int,
) -> None:
    shadow_yaml = f"shadow: {{version: '{shadowed}', fraction: 1.0}}\n"
    node = node_factory(two_versions(tmp_path, yaml + shadow_yaml, DOUBLING_MODEL))
    with caplog.at_level("WARNING", logger="inferd"):
        await node.start()
    state = node.control.shadow_state("m")["shadow"]
    assert state["primary_share"] == share
    warned = [r.getMessage() for r in caplog.records if "not mirrored" in r.getMessage()]
    if share:
        message = (
            f"model 'm': shadow version '{shadowed}' also takes {share} % of the primary "
            "traffic; those answers are not mirrored (only the other versions' are): shadow a "
            "version that takes no traffic, or move it out of the split"
        )
        assert state["warning"] == message
        assert warned == [message]
    else:
        assert state["warning"] is None
        assert warned == []


async def test_the_shadow_warning_follows_the_split(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    node = node_factory(two_versions(tmp_path, "", DOUBLING_MODEL))
    await node.start()
    node.control.set_shadow("m", {"version": "1", "fraction": 1.0})
    assert node.control.shadow_state("m")["shadow"]["primary_share"] == 0
    node.control.set_traffic("m", {"1": 10, "2": 90})
    state = node.control.shadow_state("m")["shadow"]
    assert (state["primary_share"], state["warning"] is not None) == (10, True)
