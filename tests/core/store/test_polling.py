"""Repository polling, one scan at a time: what changed on disk loads, what did not stays."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest

from inferd.core.messages import InferRequest
from inferd.core.node import Node
from inferd.core.store.polling import RepositoryPoller
from inferd.errors import Unavailable
from inferd.example import mlp_weights, write_onnx
from inferd.types import Tensor
from tests.conftest import NodeFactory, until
from tests.core.store.test_repository import YAML

#: Answers x + its version folder's name, so an answer tells which version computed it.
VERSIONED = """
import pathlib

VERSION = float(pathlib.Path(__file__).parent.name)

class Model:
    def predict(self, inputs):
        return {"x": inputs["x"] + VERSION}
"""
BROKEN = "raise RuntimeError('truncated upload')\n"


def add_version(model: Path, version: str, code: str = VERSIONED) -> None:
    (model / version).mkdir(parents=True)
    (model / version / "model.py").write_text(code)


def add_model(root: Path, name: str, versions: list[str], extra_yaml: str = "") -> Path:
    folder = root / name
    for version in versions:
        add_version(folder, version)
    (folder / "model.yaml").write_text(YAML + extra_yaml)
    return folder


async def answer(node: Node, model: str, version: str | None = None) -> str:
    """'VERSION: ADDED': the version that answered and what its model added to 0."""
    x = Tensor("x", "FP32", np.zeros((1, 2), dtype=np.float32))
    response = await node.service.infer(InferRequest(model, [x], version=version))
    return f"{response.version}: {float(response.outputs[0].data[0, 0]):g}"


Served = tuple[Node, RepositoryPoller]
StartPolled = Callable[[Path], Awaitable[Served]]


@pytest.fixture
async def start_polled(
    node_factory: NodeFactory,
) -> AsyncIterator[Callable[[Path], Awaitable[Served]]]:
    """Starts a service over a repository and a poller whose scans the test runs itself."""
    pollers: list[RepositoryPoller] = []

    async def start(root: Path) -> Served:
        node = node_factory(root)
        poller = RepositoryPoller(node.manager, 3600)
        pollers.append(poller)
        poller.start(asyncio.Event())  # the first fingerprints; it never polls by itself
        await node.start()
        return node, poller

    yield start
    for poller in pollers:
        await poller.stop()


def states(node: Node, model: str, full: bool = False) -> dict[str, str]:
    return {
        r["version"]: f"{r['state']} {r['reason']}".strip()
        for r in node.control.repository_index(full)
        if r["name"] == model
    }


async def test_a_new_version_swaps_in_and_the_one_the_policy_drops_unloads(
    tmp_path: Path, start_polled: StartPolled
) -> None:
    model = add_model(tmp_path, "m", ["1"])
    node, poller = await start_polled(tmp_path)
    assert await answer(node, "m") == "1: 1"
    add_version(model, "2")
    assert await poller.scan() == ["reload m ['2']"]
    assert await answer(node, "m") == "2: 2"
    assert states(node, "m") == {"2": "READY"}
    assert await poller.scan() == []


async def test_only_new_and_changed_versions_load_anew(
    tmp_path: Path, start_polled: StartPolled
) -> None:
    model = add_model(tmp_path, "m", ["1", "2"], "version_policy: {all: true}\n")
    add_model(tmp_path, "other", ["1"])
    node, poller = await start_polled(tmp_path)
    one, two, other = (node.manager.resolve(*key) for key in (("m", "1"), ("m", "2"), ("other",)))
    add_version(model, "3")
    assert await poller.scan() == ["reload m ['3']"]
    assert node.manager.versions("m") == ["1", "2", "3"]
    assert node.manager.resolve("m", "1") is one
    assert node.manager.resolve("m", "2") is two
    assert node.manager.resolve("other") is other
    (model / "2" / "model.py").write_text(VERSIONED.replace("+ VERSION", "+ 10 * VERSION"))
    assert await poller.scan() == ["reload m ['2']"]
    assert await answer(node, "m", "2") == "2: 20"
    assert node.manager.resolve("m", "1") is one
    assert node.manager.resolve("other") is other


async def test_a_changed_model_yaml_reloads_the_model(
    tmp_path: Path, start_polled: StartPolled
) -> None:
    model = add_model(tmp_path, "m", ["1"])
    node, poller = await start_polled(tmp_path)
    before = node.manager.resolve("m")
    # Rewritten with the same content: nothing changed.
    (model / "model.yaml").write_text(YAML)
    assert await poller.scan() == []
    assert node.manager.resolve("m") is before
    (model / "model.yaml").write_text(YAML + "labels: {stable: '1'}\n")
    assert await poller.scan() == ["reload m"]
    assert node.manager.resolve("m") is not before
    assert await answer(node, "m", "stable") == "1: 1"


async def test_new_model_folders_load_and_removed_ones_unload(
    tmp_path: Path, start_polled: StartPolled
) -> None:
    add_model(tmp_path, "m", ["1"])
    node, poller = await start_polled(tmp_path)
    add_model(tmp_path, "new", ["4"])
    assert await poller.scan() == ["load new"]
    assert await answer(node, "new") == "4: 4"
    shutil.rmtree(tmp_path / "m")
    assert await poller.scan() == ["unload m"]
    with pytest.raises(Unavailable, match="model 'm' is not ready"):
        await answer(node, "m")
    assert states(node, "m") == {"1": "UNAVAILABLE unloaded"}
    assert node.catalog.ready()


async def test_a_broken_new_version_leaves_the_old_one_serving_until_it_is_fixed(
    tmp_path: Path, start_polled: StartPolled, caplog: pytest.LogCaptureFixture
) -> None:
    model = add_model(tmp_path, "m", ["1"])
    node, poller = await start_polled(tmp_path)
    add_version(model, "2", BROKEN)
    with caplog.at_level(logging.ERROR, "inferd.models"):
        assert await poller.scan() == ["reload m ['2']"]
    assert "model 'm' version '2' failed to load (artifact_error)" in caplog.text
    assert await answer(node, "m") == "1: 1"
    assert node.catalog.ready()
    assert states(node, "m", full=True) == {
        "1": "READY",
        "2": "FAILED RuntimeError: truncated upload",
    }
    counted = 'inferd_model_load_failures_total{kind="artifact_error",model="m"} 1.0'
    assert counted in node.metrics.render().decode()
    # Nothing changed since: the poller does not try again.
    assert await poller.scan() == []
    (model / "2" / "model.py").write_text(VERSIONED)
    assert await poller.scan() == ["reload m ['2']"]
    assert await answer(node, "m") == "2: 2"
    assert states(node, "m") == {"2": "READY"}


async def test_a_model_copied_in_two_steps_loads_once_complete(
    tmp_path: Path, start_polled: StartPolled
) -> None:
    add_model(tmp_path, "m", ["1"])
    node, poller = await start_polled(tmp_path)
    # The folders arrive before the file: the load fails, the server stays ready.
    (tmp_path / "new" / "1").mkdir(parents=True)
    (tmp_path / "new" / "model.yaml").write_text(YAML)
    assert await poller.scan() == ["load new"]
    assert states(node, "new") == {"": "FAILED load_failed: config_error"}
    assert node.catalog.ready()
    (tmp_path / "new" / "1" / "model.py").write_text(VERSIONED)
    assert await poller.scan() == ["reload new ['1']"]
    assert await answer(node, "new") == "1: 1"


async def test_a_model_unloaded_by_an_admin_stays_unloaded_until_its_files_change(
    tmp_path: Path, start_polled: StartPolled
) -> None:
    model = add_model(tmp_path, "m", ["1"])
    node, poller = await start_polled(tmp_path)
    await node.control.unload_model("m")
    assert await poller.scan() == []
    assert states(node, "m") == {"1": "UNAVAILABLE unloaded"}
    add_version(model, "2")
    assert await poller.scan() == ["reload m ['2']"]
    assert await answer(node, "m") == "2: 2"


async def test_the_poller_polls_on_its_interval_once_the_models_loaded(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    model = add_model(tmp_path, "m", ["1"])
    node = node_factory(tmp_path)
    poller = RepositoryPoller(node.manager, 0.01)
    poller.start(node.loaded)
    add_version(model, "2")  # after the first fingerprints: found by the first poll
    await node.start()
    try:
        await until(lambda: node.manager.versions("m") == ["2"], 30, "version 2 to serve")
        assert await answer(node, "m") == "2: 2"
    finally:
        await poller.stop()


async def test_polling_off_does_nothing(tmp_path: Path, node_factory: NodeFactory) -> None:
    model = add_model(tmp_path, "m", ["1"])
    node = node_factory(tmp_path)
    poller = RepositoryPoller(node.manager, 0)
    poller.start(node.loaded)
    await node.start()
    add_version(model, "2")
    assert await poller.scan() == []
    assert node.manager.versions("m") == ["1"]
    await poller.stop()


async def test_a_single_model_file_is_polled(tmp_path: Path, start_polled: StartPolled) -> None:
    model = tmp_path / "net.onnx"
    write_onnx(mlp_weights((4, 2)), model)
    node, poller = await start_polled(model)
    before = node.manager.resolve("net")
    assert await poller.scan() == []
    write_onnx(mlp_weights((4, 2), seed=1), tmp_path / "next.onnx")
    (tmp_path / "next.onnx").replace(model)
    assert await poller.scan() == ["reload net ['1']"]
    assert node.manager.resolve("net") is not before
    (tmp_path / "net.yaml").write_text("timeout_s: 5\n")
    assert await poller.scan() == ["reload net"]


#: Loads once a file named ``release`` is beside it (and says it started loading).
BLOCKING = (
    """
import pathlib
import time

HERE = pathlib.Path(__file__).parent
(HERE / "loading").touch()
while not (HERE / "release").exists():
    time.sleep(0.01)
"""
    + VERSIONED
)


async def test_stopping_lets_the_load_under_way_finish_and_starts_no_other(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    add_model(tmp_path, "m", ["1"])
    node = node_factory(tmp_path)
    await node.start()
    poller = RepositoryPoller(node.manager, 0.01)
    go = asyncio.Event()
    poller.start(go)
    add_version(tmp_path / "a", "1", BLOCKING)
    (tmp_path / "a" / "model.yaml").write_text(YAML)
    add_model(tmp_path, "b", ["1"])
    go.set()  # the first poll sees both new models and loads a first
    try:
        await until((tmp_path / "a" / "1" / "loading").exists, 30, "a's load to start")
        stopping = asyncio.create_task(poller.stop())
        await asyncio.sleep(0.05)
        assert not stopping.done()  # it waits for a's load
    finally:
        (tmp_path / "a" / "1" / "release").touch()
    await stopping
    assert await answer(node, "a") == "1: 1"
    assert not node.manager.knows("b")


async def test_a_new_pipeline_loads_after_the_new_models_it_uses(
    tmp_path: Path, start_polled: StartPolled
) -> None:
    add_model(tmp_path, "m", ["1"])
    node, poller = await start_polled(tmp_path)
    # "a-pipeline" sorts before "z-step", which it uses: it loads after it all the same.
    add_model(tmp_path, "z-step", ["1"])
    (tmp_path / "a-pipeline").mkdir()
    (tmp_path / "a-pipeline" / "model.yaml").write_text(
        "pipeline:\n"
        "  steps: [{model: z-step, inputs: {x: x}}, {model: m, inputs: {x: z-step.x}}]\n"
        "  outputs: {x: m.x}\n"
    )
    assert await poller.scan() == ["load z-step", "load a-pipeline"]
    assert states(node, "a-pipeline") == {"1": "READY"}
    assert await answer(node, "a-pipeline") == "1: 2"  # 0 + 1 (z-step) + 1 (m)
