"""Model lifecycle: failures stay local, labels, reloads that drop nothing."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from inferd.core.messages import InferRequest, InferResponse
from inferd.core.serving.validation import INLINE_DECODE_COST
from inferd.errors import ModelLoadError, NotFound, Unavailable
from inferd.tensors import WireTensor
from inferd.types import Tensor
from tests.conftest import until
from tests.core.store.test_repository import make_model

SLOW_MODEL = """
import threading
import numpy as np

GATE = threading.Event()

class Model:
    def predict(self, inputs):
        GATE.wait(5)
        return {"x": inputs["x"] + VERSION}
"""


def request(model: str, version: str | None = None, value: float = 1.0) -> InferRequest:
    return InferRequest(
        model, [Tensor("x", "FP32", np.full((1, 2), value, dtype=np.float32))], version=version
    )


async def test_a_broken_model_does_not_take_the_others_down(tmp_path: Path, node_factory) -> None:
    make_model(tmp_path, "good", ["1"])
    broken = make_model(tmp_path, "broken", ["1"])
    (broken / "1" / "model.py").write_text("raise RuntimeError('corrupt weights')\n")
    node = node_factory(tmp_path)
    await node.start()
    assert not node.catalog.ready()
    index = {r["name"]: r for r in node.control.repository_index(full=True)}
    assert index["broken"]["state"] == "FAILED"
    assert index["broken"]["reason"] == "RuntimeError: corrupt weights"
    assert index["good"]["state"] == "READY"
    public = {r["name"]: r for r in node.control.repository_index()}
    assert public["broken"]["reason"] == "load_failed: artifact_error"
    response = await node.service.infer(request("good"))
    assert response.outputs[0].data.tolist() == [[1.0, 1.0]]
    with pytest.raises(Unavailable, match=r"FAILED load_failed: artifact_error\)$"):
        await node.service.infer(request("broken"))


async def test_broken_model_yaml_is_reported(tmp_path: Path, node_factory) -> None:
    make_model(tmp_path, "bad", ["1"], "instances: 0\n")
    node = node_factory(tmp_path)
    await node.start()
    (row,) = node.control.repository_index(full=True)
    assert row["state"] == "FAILED" and "instances" in row["reason"]
    (public,) = node.control.repository_index()
    assert public["reason"] == "load_failed: config_error"


async def test_versions_and_labels(tmp_path: Path, node_factory) -> None:
    folder = make_model(
        tmp_path,
        "m",
        ["1", "2"],
        "version_policy: {all: true}\nlabels: {stable: '1', canary: '2'}\n",
    )
    for version in ("1", "2"):
        (folder / version / "model.py").write_text(
            f"class Model:\n    def predict(self, inputs):\n        return {{'x': inputs['x'] * {version}}}\n"
        )
    node = node_factory(tmp_path)
    await node.start()
    assert (await node.service.infer(request("m"))).version == "2"
    assert (await node.service.infer(request("m", "stable"))).outputs[0].data.tolist() == [
        [1.0, 1.0]
    ]
    assert (await node.service.infer(request("m", "canary"))).outputs[0].data.tolist() == [
        [2.0, 2.0]
    ]
    with pytest.raises(NotFound, match="no version '3'"):
        await node.service.infer(request("m", "3"))


async def test_reload_swaps_without_failing_requests(tmp_path: Path, node_factory) -> None:
    folder = make_model(tmp_path, "m", ["1"], "warmup: false\n")
    (folder / "1" / "model.py").write_text(SLOW_MODEL.replace("VERSION", "1"))
    node = node_factory(tmp_path)
    await node.start()
    # A request is held inside the old version while the reload happens.
    in_flight = asyncio.create_task(node.service.infer(request("m")))
    await asyncio.sleep(0)
    (folder / "2").mkdir()
    (folder / "2" / "model.py").write_text(
        "class Model:\n    def predict(self, inputs):\n        return {'x': inputs['x'] + 2}\n"
    )
    reload = asyncio.create_task(node.control.load_model("m"))
    await until(lambda: node.manager.versions("m") == ["2"], 30, "version 2 to serve")
    after = await node.service.infer(request("m"))
    assert after.version == "2"
    import sys

    module = next(
        m
        for name, m in sys.modules.items()
        if name.startswith("inferd_model_") and hasattr(m, "GATE")
    )
    module.GATE.set()
    before = await in_flight
    assert before.version == "1" and before.outputs[0].data.tolist() == [[2.0, 2.0]]
    await reload
    index = {r["version"]: r["state"] for r in node.control.repository_index()}
    assert index == {"2": "READY"}


async def test_failed_reload_keeps_the_old_version(tmp_path: Path, node_factory) -> None:
    folder = make_model(tmp_path, "m", ["1"])
    node = node_factory(tmp_path)
    await node.start()
    (folder / "1" / "model.py").write_text("raise ValueError('bad update')\n")
    with pytest.raises(ModelLoadError, match="bad update"):
        await node.control.load_model("m")
    response = await node.service.infer(request("m"))
    assert response.version == "1"


def onnx_model(root: Path, yaml_text: str) -> None:
    from inferd.example import mlp_weights, write_onnx

    write_onnx(mlp_weights((4, 2)), root / "m" / "1" / "model.onnx")
    (root / "m" / "model.yaml").write_text(yaml_text)


@pytest.mark.parametrize(
    ("declared", "problem"),
    [
        (
            "inputs: [{name: inp, datatype: FP32, shape: [-1, 4]}]\n",
            "input 'inp' is not an input of 1/model.onnx; its inputs are ['input']",
        ),
        (
            "outputs: [{name: out, datatype: FP32, shape: [-1, 2]}]\n",
            "output 'out' is not an output of 1/model.onnx; its outputs are ['output']",
        ),
    ],
)
async def test_a_name_the_artifact_does_not_have_is_one_message(
    tmp_path: Path, node_factory, declared: str, problem: str
) -> None:
    onnx_model(tmp_path / "repo", declared)
    node = node_factory(tmp_path / "repo")
    await node.start()
    (row,) = node.control.repository_index(full=True)
    assert (row["state"], row["reason"]) == ("FAILED", f"repo/m/model.yaml: {problem}")
    assert node.control.repository_index()[0]["reason"] == "load_failed: config_error"


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("import not_a_module_anywhere\n", "import_error"),
        ("raise RuntimeError('corrupt')\n", "artifact_error"),
        (
            "class Model:\n    def predict(self, inputs):\n        raise ValueError('cold')\n",
            "warmup_error",
        ),
    ],
)
async def test_load_failures_have_a_fixed_class(
    tmp_path: Path, node_factory, code: str, kind: str
) -> None:
    folder = make_model(tmp_path, "m", ["1"])
    (folder / "1" / "model.py").write_text(code)
    node = node_factory(tmp_path)
    await node.start()
    (row,) = node.control.repository_index()
    assert (row["state"], row["reason"]) == ("FAILED", f"load_failed: {kind}")
    with pytest.raises(Unavailable) as caught:
        await node.service.infer(request("m"))
    assert caught.value.message == f"model 'm' is not ready (version 1: FAILED load_failed: {kind})"


HUNG_MODEL = """
import pathlib
import time

RELEASE = pathlib.Path(__file__).with_name("release")

class Model:
    def predict(self, inputs):
        while not RELEASE.exists():
            time.sleep(0.01)
        return inputs
"""


async def test_a_hung_model_is_reported_refused_and_unloaded(tmp_path: Path, node_factory) -> None:
    make_model(tmp_path, "good", ["1"])
    hung = make_model(tmp_path, "hung", ["1"], "warmup: false\nmax_batch_time_s: 0.2\n")
    (hung / "1" / "model.py").write_text(HUNG_MODEL)
    node = node_factory(tmp_path, limits={"models": {"unload_grace_s": 0.1}})
    await node.start()
    try:
        with pytest.raises(Unavailable, match="max_batch_time_s"):
            await node.service.infer(request("hung"))
        index = {r["name"]: r for r in node.control.repository_index()}
        assert index["hung"]["state"] == "UNHEALTHY"
        assert "max_batch_time_s" in index["hung"]["reason"]
        assert index["good"]["state"] == "READY"
        reason = node.catalog.model_unready_reason("hung")
        assert reason is not None and reason.startswith("unhealthy")
        assert node.catalog.ready()  # the other models keep the server ready
        with pytest.raises(Unavailable, match="unhealthy"):
            await asyncio.wait_for(node.service.infer(request("hung")), 1)
        response = await node.service.infer(request("good", value=2.0))
        assert response.outputs[0].data.tolist() == [[2.0, 2.0]]
        await asyncio.wait_for(node.control.unload_model("hung"), 5)
        index = {r["name"]: r for r in node.control.repository_index()}
        assert index["hung"]["state"] == "UNAVAILABLE"
    finally:
        (hung / "1" / "release").touch()


async def test_a_broken_new_version_leaves_the_old_one_serving(
    tmp_path: Path, node_factory
) -> None:
    folder = make_model(tmp_path, "m", ["1"])
    node = node_factory(tmp_path)
    await node.start()
    (folder / "2").mkdir()
    (folder / "2" / "model.py").write_text("raise ValueError('bad update')\n")
    with pytest.raises(ModelLoadError, match="version 2: ValueError: bad update"):
        await node.control.load_model("m")
    # The policy (latest: 1) drops version 1 only once version 2 serves.
    assert (await node.service.infer(request("m"))).version == "1"
    assert node.catalog.ready()
    index = {r["version"]: (r["state"], r["reason"]) for r in node.control.repository_index()}
    assert index == {"1": ("READY", ""), "2": ("FAILED", "load_failed: artifact_error")}
    (folder / "2" / "model.py").unlink()
    (folder / "2").rmdir()
    await node.control.load_model("m")
    assert {r["version"]: r["state"] for r in node.control.repository_index()} == {"1": "READY"}


async def test_concurrent_loads_and_unloads_keep_the_server_ready(
    tmp_path: Path, node_factory
) -> None:
    make_model(tmp_path, "m", ["1"], "warmup: false\n")
    node = node_factory(tmp_path)
    await node.start()
    unready = 0
    done = asyncio.Event()

    async def watch() -> None:
        nonlocal unready
        while not done.is_set():
            unready += not node.catalog.ready()
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    calls = [
        node.control.load_model("m") if i % 2 else node.control.unload_model("m") for i in range(32)
    ]
    await asyncio.gather(*calls)  # no caller fails
    done.set()
    await watcher
    assert unready == 0
    # They ran in turn: the last (a load) decided; the version's metrics are its own.
    assert (await node.service.infer(request("m"))).version == "1"
    assert node.control.repository_index() == [
        {"name": "m", "version": "1", "state": "READY", "reason": ""}
    ]
    assert 'inferd_batch_size_count{model="m",version="1"} 1.0' in node.metrics.render().decode()


GATED_MODEL = """
import pathlib
import time

HERE = pathlib.Path(__file__).parent

class Model:
    def predict(self, inputs):
        (HERE / "entered").touch()
        while not (HERE / "release").exists():
            time.sleep(0.01)
        return inputs
"""


async def test_an_unload_that_drains_after_a_new_load_leaves_the_new_one_its_metrics(
    tmp_path: Path, node_factory
) -> None:
    folder = make_model(tmp_path, "m", ["1"], "warmup: false\n")
    (folder / "1" / "model.py").write_text(GATED_MODEL)
    node = node_factory(tmp_path)
    await node.start()
    try:
        in_flight = asyncio.create_task(node.service.infer(request("m")))
        await until((folder / "1" / "entered").exists, 30, "the request to reach the model")
        unloading = asyncio.create_task(node.control.unload_model("m"))
        await until(lambda: not node.manager.versions("m"), 30, "m to stop serving")
        await node.control.load_model("m")  # while the unload still drains the old instance
    finally:
        (folder / "1" / "release").touch()
    assert (await in_flight).version == "1"
    await unloading
    assert (await node.service.infer(request("m"))).version == "1"
    metrics = node.metrics.render().decode()
    assert 'inferd_batch_size_count{model="m",version="1"} 2.0' in metrics


TIMES = "class Model:\n    def predict(self, inputs):\n        return {{'x': inputs['x'] * {}}}\n"


async def swapped_while_decoding(
    tmp_path: Path, node_factory, version: str | None, folder: str, factor: int
) -> InferResponse:
    """A request whose large input decodes in a thread while ``folder`` gets a model that
    multiplies by ``factor`` and the model reloads."""
    model = make_model(tmp_path, "m", ["1"])
    node = node_factory(tmp_path)
    await node.start()
    decoding, swapped = threading.Event(), threading.Event()

    def decode() -> np.ndarray:
        decoding.set()
        swapped.wait(30)
        return np.full((1, 2), 3.0, dtype=np.float32)

    wire = WireTensor("x", "FP32", (1, 2), decode, cost=INLINE_DECODE_COST + 1)
    answering = asyncio.create_task(node.service.infer(InferRequest("m", [wire], version=version)))
    try:
        await asyncio.to_thread(decoding.wait, 30)
        (model / folder).mkdir(exist_ok=True)
        (model / folder / "model.py").write_text(TIMES.format(factor))
        await node.control.load_model("m")  # version 1's instance drains (nothing queued) and goes
    finally:
        swapped.set()
    return await answering


@pytest.mark.parametrize(
    ("version", "folder", "answer"),
    [(None, "2", ("2", 6.0)), (None, "1", ("1", 9.0)), ("1", "1", ("1", 9.0))],
    ids=["a-new-version", "the-version-reloaded", "the-version-it-named-reloaded"],
)
async def test_a_request_swapped_out_before_its_queue_is_routed_again(
    tmp_path: Path, node_factory, version: str | None, folder: str, answer: tuple[str, float]
) -> None:
    factor = 2 if folder == "2" else 3
    response = await swapped_while_decoding(tmp_path, node_factory, version, folder, factor)
    assert (response.version, float(response.outputs[0].data[0, 0])) == answer


async def test_a_request_for_a_version_a_swap_dropped_is_not_routed_elsewhere(
    tmp_path: Path, node_factory
) -> None:
    with pytest.raises(NotFound, match=r"model 'm' has no version '1'; serving \['2'\]"):
        await swapped_while_decoding(tmp_path, node_factory, "1", "2", 2)
