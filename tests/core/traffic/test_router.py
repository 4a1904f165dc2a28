"""The router: labels, traffic splits (sticky with a key, weighted random without)."""

from __future__ import annotations

import random
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from inferd.core.messages import InferRequest
from inferd.core.traffic import router
from inferd.core.traffic.router import Split, check_weights
from inferd.errors import InvalidArgument, NotFound
from inferd.types import Tensor
from tests.core.store.test_repository import make_model

KEYS = [f"user-{i}" for i in range(10_000)]


def request(model: str = "m", version: str | None = None, key: str | None = None) -> InferRequest:
    return InferRequest(
        model,
        [Tensor("x", "FP32", np.ones((1, 2), dtype=np.float32))],
        version=version,
        routing_key=key,
    )


def versions_model(root: Path, versions: list[str], extra_yaml: str = "") -> Path:
    """A model whose every version answers x * its version number."""
    folder = make_model(root, "m", versions, "version_policy: {all: true}\n" + extra_yaml)
    for version in versions:
        (folder / version / "model.py").write_text(
            "class Model:\n    def predict(self, inputs):\n"
            f"        return {{'x': inputs['x'] * {version}}}\n"
        )
    return folder


def test_a_keyed_split_lands_within_two_percent_and_every_key_sticks() -> None:
    split = Split.of({"1": 90, "2": 10})
    chosen = {key: split.choose(key) for key in KEYS}
    share = Counter(chosen.values())["2"] / len(KEYS)
    assert 0.08 <= share <= 0.12
    assert all(split.choose(key) == version for key, version in chosen.items())
    assert all(Split.of({"1": 90, "2": 10}).choose(k) == v for k, v in chosen.items())


def test_a_split_remembers_a_bounded_number_of_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(router, "CHOICES_KEPT", 8)
    split = Split.of({"1": 50, "2": 50})
    keys = [f"user-{n}" for n in range(20)]
    first = [split.choose(k) for k in keys]
    assert 0 < len(split.chosen) <= 8  # cleared whole when full, then filled again
    assert [split.choose(k) for k in keys] == first  # remembered or computed: the same
    assert first == [Split.of({"1": 50, "2": 50}).choose(k) for k in keys]
    assert set(first) == {"1", "2"}


def test_moving_ten_percent_moves_only_the_keys_that_must_move() -> None:
    before = Split.of({"1": 90, "2": 10})
    after = Split.of({"1": 80, "2": 20})
    moved = [key for key in KEYS if before.choose(key) != after.choose(key)]
    assert 0.07 <= len(moved) / len(KEYS) <= 0.13
    # Only from the version that lost weight to the one that gained it.
    assert all(before.choose(k) == "1" and after.choose(k) == "2" for k in moved)


def test_without_a_key_the_choice_follows_the_weights() -> None:
    random.seed(7)
    split = Split.of({"1": 70, "2": 20, "3": 10})
    counts = Counter(split.choose(None) for _ in range(20_000))
    assert abs(counts["1"] / 20_000 - 0.7) < 0.02
    assert abs(counts["2"] / 20_000 - 0.2) < 0.02
    assert abs(counts["3"] / 20_000 - 0.1) < 0.02


def test_a_zero_weight_gets_nothing() -> None:
    split = Split.of({"1": 100, "2": 0})
    assert {split.choose(key) for key in KEYS[:1000]} == {"1"}
    assert {split.choose(None) for _ in range(1000)} == {"1"}


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({}, "expected a mapping"),
        ([["1", 100]], "expected a mapping"),
        ({"1": 90, "2": 20}, "must sum to 100, got 110"),
        ({"1": 100.0}, "must be an integer >= 0, got 100.0"),
        ({"1": True}, "must be an integer >= 0, got True"),
        ({"1": 110, "2": -10}, "must be an integer >= 0, got -10"),
        ({"": 100}, "non-empty strings"),
    ],
)
def test_bad_weights_are_refused(weights: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        check_weights(weights, "traffic")


async def test_labels_resolve_in_the_router(tmp_path: Path, node_factory) -> None:
    versions_model(tmp_path, ["1", "2"], "labels: {stable: '1', canary: '2'}\n")
    node = node_factory(tmp_path)
    await node.start()
    assert node.router.resolve("m", "stable").version == "1"
    assert node.router.resolve("m", "canary").version == "2"
    assert node.router.resolve("m").version == "2"
    assert (await node.service.infer(request(version="stable"))).version == "1"
    with pytest.raises(NotFound, match="no version 'stable'"):
        node.manager.resolve("m", "stable")  # the manager knows versions only


async def test_the_yaml_split_routes_and_sticks(tmp_path: Path, node_factory) -> None:
    versions_model(tmp_path, ["1", "2"], "traffic: {1: 50, 2: 50}\n")
    node = node_factory(tmp_path)
    await node.start()
    assert node.router.traffic("m") == {"1": 50, "2": 50}
    answered = {key: (await node.service.infer(request(key=key))).version for key in KEYS[:200]}
    assert set(answered.values()) == {"1", "2"}
    for key, version in answered.items():
        response = await node.service.infer(request(key=key))
        assert response.version == version
        assert response.outputs[0].data.tolist() == [[float(version)] * 2]
    # A named version or label bypasses the split.
    assert all(node.router.resolve("m", "1", key).version == "1" for key in KEYS[:50])


async def test_set_traffic_is_checked_and_none_clears(tmp_path: Path, node_factory) -> None:
    versions_model(tmp_path, ["1", "2"])
    node = node_factory(tmp_path)
    await node.start()
    router = node.router
    assert router.traffic("m") is None
    router.set_traffic("m", {"1": 100, "2": 0})
    assert {router.resolve("m", key=k).version for k in KEYS[:100]} == {"1"}
    with pytest.raises(InvalidArgument, match="version '3' is not served; serving"):
        router.set_traffic("m", {"1": 50, "3": 50})
    with pytest.raises(InvalidArgument, match="must sum to 100"):
        router.set_traffic("m", {"1": 50})
    with pytest.raises(NotFound, match="model 'nope' is not known"):
        router.set_traffic("nope", {"1": 100})
    with pytest.raises(NotFound, match="model 'nope' is not known"):
        router.traffic("nope")
    assert router.traffic("m") == {"1": 100, "2": 0}
    router.set_traffic("m", None)
    assert router.traffic("m") is None
    assert router.resolve("m", key="any").version == "2"


async def test_a_reload_resets_to_the_yaml_split(tmp_path: Path, node_factory) -> None:
    versions_model(tmp_path, ["1", "2"], "traffic: {'1': 90, '2': 10}\n")
    node = node_factory(tmp_path)
    await node.start()
    node.router.set_traffic("m", {"1": 0, "2": 100})
    await node.control.load_model("m")
    assert node.router.traffic("m") == {"1": 90, "2": 10}


async def test_a_split_member_gone_leaves_the_others_answering(
    tmp_path: Path, node_factory
) -> None:
    folder = versions_model(tmp_path, ["1", "2", "3"], "traffic: {1: 40, 2: 30, 3: 30}\n")
    node = node_factory(tmp_path)
    await node.start()
    before = {key: node.router.resolve("m", key=key).version for key in KEYS[:1000]}
    shutil.rmtree(folder / "3")
    await node.control.load_model("m")
    assert node.manager.versions("m") == ["1", "2"]
    for key, version in before.items():
        answered = (await node.service.infer(request(key=key))).version
        # Keys of the versions still served stay where they were.
        assert answered == version or (version == "3" and answered in ("1", "2"))
    unkeyed = Counter([(await node.service.infer(request())).version for _ in range(200)])
    assert set(unkeyed) == {"1", "2"}


async def test_no_split_member_served_falls_back_to_the_latest(
    tmp_path: Path, node_factory
) -> None:
    folder = versions_model(tmp_path, ["1", "2", "3"], "traffic: {1: 50, 2: 50}\n")
    node = node_factory(tmp_path)
    await node.start()
    shutil.rmtree(folder / "1")
    shutil.rmtree(folder / "2")
    await node.control.load_model("m")
    assert (await node.service.infer(request(key="k"))).version == "3"
    assert (await node.service.infer(request())).version == "3"


async def test_a_routing_key_too_long_is_refused(tmp_path: Path, node_factory) -> None:
    versions_model(tmp_path, ["1", "2"], "traffic: {1: 50, 2: 50}\n")
    node = node_factory(tmp_path, routing={"max_key_length": 8})
    await node.start()
    routed = node.router.resolve("m", key="12345678").version  # the longest key allowed
    assert (await node.service.infer(request(key="12345678"))).version == routed
    with pytest.raises(InvalidArgument, match="9 characters long; at most 8"):
        await node.service.infer(request(key="123456789"))


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("traffic: {1: 90, 2: 20}\n", "weights must sum to 100, got 110"),
        ("traffic: {1: 110, 2: -10}\n", "below 0"),
        ("traffic: {1: '90', 2: 10}\n", "valid integer"),
    ],
)
async def test_a_bad_yaml_split_fails_the_load(
    tmp_path: Path, node_factory, yaml: str, message: str
) -> None:
    versions_model(tmp_path, ["1", "2"], yaml)
    node = node_factory(tmp_path)
    await node.start()
    (row,) = node.control.repository_index(full=True)
    assert row["state"] == "FAILED"
    assert message in row["reason"]
