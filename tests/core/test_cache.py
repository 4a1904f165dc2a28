"""The prediction cache through the service: keys, hits, single flight, invalidation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from inferd.core.cache import folder_digest, version_digest
from inferd.core.cache_entry import decode, encode
from inferd.core.messages import InferRequest, RequestedOutput
from inferd.core.node import Node
from inferd.core.store.model_config import ModelConfig
from inferd.errors import ConfigError, Unavailable
from inferd.types import Tensor, TensorSpec
from tests.conftest import NodeFactory, RedisServer, free_port

#: y is the number of batches the model has run so far: equal answers mean "not computed".
COUNTING_MODEL = """
import numpy as np


class Model:
    def load(self, context):
        self.calls = 0

    def predict(self, inputs):
        self.calls += 1
        x = inputs["x"]
        return {"y": np.full((x.shape[0], 1), self.calls, dtype=np.float32), "z": x * 2}
"""


def counting_repo(
    root: Path, cache: dict[str, Any] | None = None, code: str = COUNTING_MODEL
) -> Path:
    folder = root / "m"
    (folder / "1").mkdir(parents=True, exist_ok=True)
    (folder / "1" / "model.py").write_text(code)
    config: dict[str, Any] = {
        "runtime": "python",
        "warmup": False,
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
        "outputs": [
            {"name": "y", "datatype": "FP32", "shape": [-1, 1]},
            {"name": "z", "datatype": "FP32", "shape": [-1, 2]},
        ],
    }
    if cache is not None:
        config["cache"] = cache
    (folder / "model.yaml").write_text(yaml.safe_dump(config))
    return root


def request(x: list[float], outputs: list[str] | None = None) -> InferRequest:
    return InferRequest(
        "m",
        [Tensor("x", "FP32", np.asarray([x], dtype=np.float32))],
        outputs=[RequestedOutput(name) for name in outputs] if outputs else None,
    )


async def started(factory: NodeFactory, root: Path, **sections: Any) -> Node:
    node = factory(root, **sections)
    await node.start()
    return node


def y(response: Any) -> float:
    return float(response.outputs[0].data[0, 0])


def cache_stats(node: Node) -> tuple[int, int]:
    stats = node.catalog.model_stats("m")["model_stats"][0]["inference_stats"]
    return stats["cache_hit"]["count"], stats["cache_miss"]["count"]


def test_values_round_trip_without_pickle() -> None:
    tensors = [
        Tensor("f", "FP32", np.arange(6, dtype=np.float32).reshape(2, 3)),
        Tensor("i", "INT64", np.asarray([[-1, 2**40]], dtype=np.int64)),
        Tensor("b", "BOOL", np.asarray([True, False])),
        Tensor("s", "BYTES", np.asarray([b"a", b"\x00\xff", b""], dtype=object)),
        Tensor("e", "FP16", np.zeros((0, 4), dtype=np.float16)),
    ]
    back = decode(encode(tensors))
    assert [(t.name, t.datatype, t.data.shape) for t in back] == [
        (t.name, t.datatype, t.data.shape) for t in tensors
    ]
    for got, sent in zip(back, tensors, strict=True):
        assert got.data.tolist() == sent.data.tolist()


@pytest.mark.parametrize("value", [b"", b"pickle\x80", encode([]) + b"x"])
def test_a_value_that_is_not_an_entry_is_refused(value: bytes) -> None:
    with pytest.raises(ValueError, match="cache entry"):
        decode(value)


async def test_a_repeated_request_is_a_hit_with_the_first_answer(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    node = await started(node_factory, counting_repo(tmp_path, {"enabled": True}))
    first = await node.service.infer(request([1, 2]))
    second = await node.service.infer(request([1, 2]))
    other = await node.service.infer(request([1, 3]))
    assert (first.cache, second.cache, other.cache) == ("miss", "hit", "miss")
    assert (y(first), y(second), y(other)) == (1.0, 1.0, 2.0)
    assert second.outputs[1].data.tolist() == [[2.0, 4.0]]
    assert cache_stats(node) == (1, 2)
    text = node.metrics.render().decode()
    assert 'inferd_cache_lookups_total{model="m",result="hit"} 1.0' in text
    assert 'inferd_cache_lookups_total{model="m",result="miss"} 2.0' in text


async def test_a_hit_shares_nothing_an_answer_may_change(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    """The in-process store keeps copies of the arrays (not views of the answer's, nor of
    its batch's), read-only, and a hit gets tensors of its own (shared memory sets an
    output's parameters on the response)."""
    node = await started(node_factory, counting_repo(tmp_path, {"enabled": True}))
    miss = await node.service.infer(request([1, 2]))
    miss.outputs[1].data[0, 0] = 99.0  # the answer's own array
    miss.outputs[1].parameters["changed"] = True
    hit = await node.service.infer(request([1, 2]))
    again = await node.service.infer(request([1, 2]))
    assert (hit.cache, again.cache) == ("hit", "hit")
    assert hit.outputs[1].data.tolist() == [[2.0, 4.0]]
    assert hit.outputs[1].parameters == {}
    hit.outputs[1].parameters["changed"] = True
    assert again.outputs[1].parameters == {}
    with pytest.raises(ValueError, match="read-only"):
        hit.outputs[1].data[0, 0] = 99.0


async def test_requested_outputs_are_part_of_the_key(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    node = await started(node_factory, counting_repo(tmp_path, {"enabled": True}))
    both = await node.service.infer(request([1, 2]))
    only_y = await node.service.infer(request([1, 2], ["y"]))
    assert (both.cache, only_y.cache, y(only_y)) == ("miss", "miss", 2.0)
    assert [t.name for t in only_y.outputs] == ["y"]


async def test_a_model_without_the_cache_computes_every_time(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    node = await started(node_factory, counting_repo(tmp_path))
    first = await node.service.infer(request([1, 2]))
    second = await node.service.infer(request([1, 2]))
    assert (first.cache, second.cache, y(second)) == (None, None, 2.0)
    assert cache_stats(node) == (0, 0)


class Held:
    """A computation held until ``release`` is set; it counts its calls and answers
    y = the call's number."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.calls = 0

    async def __call__(self) -> list[Tensor]:
        self.calls += 1
        call = self.calls
        await self.release.wait()
        return [Tensor("y", "FP32", np.full((1, 1), call, dtype=np.float32))]


def through(
    node: Node, x: list[float], compute: Callable[[], Awaitable[list[Tensor]]]
) -> asyncio.Task[tuple[list[Tensor], bool]]:
    """The counting model's output y for the row ``x`` through the cache, as a task."""
    cache = node.manager.resolve("m").plan.cache
    assert cache is not None
    row = np.asarray([x], dtype=np.float32)
    return asyncio.create_task(cache.through({"x": row}, request(x), ["y"], compute))


async def test_identical_requests_in_flight_are_computed_once(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    node = await started(node_factory, counting_repo(tmp_path, {"enabled": True}))
    compute = Held()
    calls = [through(node, [5, 5], compute) for _ in range(5)]
    await asyncio.sleep(0)  # let every call reach the cache
    compute.release.set()
    results = await asyncio.gather(*calls)
    assert compute.calls == 1
    assert sorted(hit for _, hit in results) == [False, True, True, True, True]


async def test_a_failure_reaches_every_waiter_and_is_not_stored(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    node = await started(node_factory, counting_repo(tmp_path, {"enabled": True}))
    release = asyncio.Event()

    async def failing() -> list[Tensor]:
        await release.wait()
        raise Unavailable("model went away")

    calls = [through(node, [7, 7], failing) for _ in range(3)]
    await asyncio.sleep(0)
    release.set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert [type(o) for o in outcomes] == [Unavailable] * 3
    answer = await node.service.infer(request([7, 7], ["y"]))
    assert answer.cache == "miss"


async def test_a_waiter_computes_when_the_first_caller_goes_away(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    node = await started(node_factory, counting_repo(tmp_path, {"enabled": True}))
    compute = Held()
    first, waiter = through(node, [5, 5], compute), through(node, [5, 5], compute)
    await asyncio.sleep(0)  # the first computes, the waiter waits for it
    first.cancel()
    await asyncio.sleep(0)
    compute.release.set()
    tensors, hit = await waiter
    assert first.cancelled()
    assert (compute.calls, hit, float(tensors[0].data[0, 0])) == (2, False, 2.0)
    again, hit = await through(node, [5, 5], compute)  # what the waiter computed was stored
    assert (hit, float(again[0].data[0, 0])) == (True, 2.0)


async def test_new_weights_under_the_same_version_are_a_miss(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    root = counting_repo(tmp_path, {"enabled": True})
    node = await started(node_factory, root)
    assert (await node.service.infer(request([1, 2]))).cache == "miss"
    counting_repo(tmp_path, {"enabled": True}, COUNTING_MODEL.replace("x * 2", "x * 3"))
    await node.control.load_model("m")
    again = await node.service.infer(request([1, 2]))
    assert (again.cache, again.outputs[1].data.tolist()) == ("miss", [[3.0, 6.0]])


async def test_unload_frees_what_the_process_held(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    node = await started(node_factory, counting_repo(tmp_path, {"enabled": True}))
    await node.service.infer(request([1, 2]))
    assert 'inferd_cache_bytes{model="m"} 0.0' not in node.metrics.render().decode()
    await node.control.unload_model("m")
    assert 'inferd_cache_bytes{model="m"} 0.0' in node.metrics.render().decode()


async def test_the_in_process_cache_stays_in_max_bytes(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    # One entry takes ~790 bytes in the process (key, the store's entry, two small
    # arrays): room for two.
    settings = {"enabled": True, "max_bytes": 2000}
    node = await started(node_factory, counting_repo(tmp_path, settings))
    for x in (1, 2, 3):
        await node.service.infer(request([x, x]))
    assert (await node.service.infer(request([3, 3]))).cache == "hit"
    assert (await node.service.infer(request([1, 1]))).cache == "miss"  # evicted
    assert 'inferd_cache_evictions_total{model="m"}' in node.metrics.render().decode()


async def test_redis_is_shared_by_services(
    tmp_path: Path, node_factory: NodeFactory, redis_server: RedisServer
) -> None:
    root = counting_repo(tmp_path, {"enabled": True})
    storage = {"redis_uri": redis_server.uri, "timeout_ms": 1000}
    one = await started(node_factory, root, storage=storage)
    two = await started(node_factory, root, storage=storage)
    made = await one.service.infer(request([4, 2]))
    reused = await two.service.infer(request([4, 2]))
    assert (made.cache, reused.cache, y(reused)) == ("miss", "hit", y(made))


async def test_redis_down_bypasses_the_cache_and_inference_goes_on(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    storage = {"redis_uri": f"redis://127.0.0.1:{free_port()}/0", "timeout_ms": 50}
    node = await started(node_factory, counting_repo(tmp_path, {"enabled": True}), storage=storage)
    first = await node.service.infer(request([1, 2]))
    second = await node.service.infer(request([1, 2]))
    assert (first.cache, second.cache, y(second)) == ("miss", "miss", 2.0)
    text = node.metrics.render().decode()
    assert 'inferd_cache_lookups_total{model="m",result="bypassed"} 2.0' in text


@pytest.mark.parametrize(
    ("given", "expected"), [("256MiB", 256 << 20), ("1.5KB", 1500), (4096, 4096), ("10 B", 10)]
)
async def test_max_bytes_takes_units(
    tmp_path: Path, node_factory: NodeFactory, given: object, expected: int
) -> None:
    node = await started(
        node_factory, counting_repo(tmp_path, {"enabled": True, "max_bytes": given})
    )
    assert node.manager.resolve("m").config.cache.max_bytes == expected


def test_a_bad_size_names_the_field(tmp_path: Path) -> None:
    from inferd.core.store.model_config import read_model_config

    path = counting_repo(tmp_path, {"enabled": True, "max_bytes": "12XB"}) / "m" / "model.yaml"
    with pytest.raises(ConfigError, match=r"cache\.max_bytes: .*got '12XB'"):
        read_model_config(path)


def test_the_version_digest_covers_every_file_and_what_reaches_the_outputs(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "1"
    (folder / "data").mkdir(parents=True)
    (folder / "model.py").write_text("class Model: ...")
    (folder / "data" / "scale.txt").write_text("2")
    files = folder_digest(folder)
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\0")
    (folder / ".notes").write_text("not read by the model")
    assert folder_digest(folder) == files, "bytecode and dot files are not the model"
    (folder / "data" / "scale.txt").write_text("3")
    assert folder_digest(folder) != files

    spec = TensorSpec("y", "FP32", (-1, 2))
    base = ModelConfig(runtime="python")
    digest = version_digest(files, "python", base, [spec], [spec])
    assert version_digest(files, "python", base, [spec], [spec]) == digest
    changed = [
        version_digest(folder_digest(folder), "python", base, [spec], [spec]),
        version_digest(files, "onnx", base, [spec], [spec]),
        version_digest(files, "python", ModelConfig(parameters={"scale": 3}), [spec], [spec]),
        version_digest(files, "python", ModelConfig(precision="fp16"), [spec], [spec]),
        version_digest(files, "python", ModelConfig(device="cuda:0"), [spec], [spec]),
        version_digest(files, "python", ModelConfig(nonfinite_outputs="encode"), [spec], [spec]),
        version_digest(files, "python", ModelConfig(allow_nonfinite=True), [spec], [spec]),
        version_digest(files, "python", base, [spec], [TensorSpec("z", "FP32", (-1, 2))]),
    ]
    assert len({digest, *changed}) == len(changed) + 1
