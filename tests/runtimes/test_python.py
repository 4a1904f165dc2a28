"""The Python model API: load(context), the request hooks, async predict, checks at load."""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from inferd.core.store.model_config import ModelConfig
from inferd.core.store.versions import runtime_options
from inferd.errors import ConfigError, InternalError
from inferd.runtimes.base import Runtime, runtime_class
from inferd.settings import PerformanceSettings
from tests.conftest import NodeFactory, asgi_client

TEXT_YAML: dict[str, Any] = {
    "runtime": "python",
    "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
    "outputs": [{"name": "answer", "datatype": "BYTES", "shape": [-1]}],
    "max_batch_size": 8,
}
TENSOR_YAML: dict[str, Any] = {
    "runtime": "python",
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
}


def write_model(folder: Path, source: str, config: dict[str, Any]) -> Path:
    (folder / "1").mkdir(parents=True, exist_ok=True)
    (folder / "1" / "model.py").write_text(textwrap.dedent(source))
    (folder / "model.yaml").write_text(yaml.safe_dump(config))
    return folder / "1" / "model.py"


def load_runtime(tmp_path: Path, source: str, config: dict[str, Any]) -> Runtime:
    artifact = write_model(tmp_path / "m", source, config)
    runtime = runtime_class("python")(
        runtime_options(
            ModelConfig.model_validate(config),
            artifact,
            PerformanceSettings(intra_op_threads=3),
            model="m",
            version="1",
        )
    )
    runtime.load()
    return runtime


@pytest.fixture
def loaded() -> Iterator[list[Runtime]]:
    runtimes: list[Runtime] = []
    yield runtimes
    for runtime in runtimes:
        runtime.unload()


def test_load_receives_the_context(tmp_path: Path, loaded: list[Runtime]) -> None:
    source = """
        import json

        class Model:
            def load(self, context):
                seen = {
                    "folder": str(context.folder), "model": context.model,
                    "version": context.version, "device": context.device,
                    "threads": context.threads, "parameters": context.parameters,
                    "instances": context.config.instances,
                }
                (context.folder / "seen.json").write_text(json.dumps(seen))

            def predict(self, inputs):
                return {"y": inputs["x"]}
        """
    config = {**TENSOR_YAML, "parameters": {"vocab": "words.txt"}, "instances": 2}
    loaded.append(load_runtime(tmp_path, source, config))
    seen = json.loads((tmp_path / "m" / "1" / "seen.json").read_text())
    assert seen == {
        "folder": str(tmp_path / "m" / "1"),
        "model": "m",
        "version": "1",
        "device": "cpu",
        "threads": 3,
        "parameters": {"vocab": "words.txt"},
        "instances": 2,
    }


def test_load_without_a_context_still_works(tmp_path: Path, loaded: list[Runtime]) -> None:
    source = """
        class Model:
            def load(self):
                self.offset = 10.0

            def predict(self, inputs):
                return {"y": inputs["x"] + self.offset}
        """
    runtime = load_runtime(tmp_path, source, TENSOR_YAML)
    loaded.append(runtime)
    out = runtime.infer({"x": np.ones((1, 2), np.float32)})
    np.testing.assert_array_equal(out["y"], [[11.0, 11.0]])


def test_bytes_inputs_are_object_arrays_of_bytes(tmp_path: Path, loaded: list[Runtime]) -> None:
    source = """
        import numpy as np

        class Model:
            def predict(self, inputs):
                text = inputs["text"]
                kinds = [f"{text.dtype}:{type(item).__name__}:{item!r}" for item in text]
                return {"answer": np.array(kinds, dtype=object)}
        """
    runtime = load_runtime(tmp_path, source, TEXT_YAML)
    loaded.append(runtime)
    out = runtime.infer({"text": np.array([b"a", b"\xff"], dtype=object)})
    assert out["answer"].tolist() == ["object:bytes:b'a'", "object:bytes:b'\\xff'"]


HOOKED = """
    import json

    class Model:
        def decode_request(self, request):
            return request["text"].decode().split()

        def batch(self, items):
            return {"words": items, "size": len(items)}

        def predict(self, batch):
            return [(len(words), batch["size"]) for words in batch["words"]]

        def unbatch(self, output):
            return [{"words": n, "batch": size} for n, size in output]

        def encode_response(self, output):
            return {"answer": output}
    """


def test_hooks_decode_batch_unbatch_encode(tmp_path: Path, loaded: list[Runtime]) -> None:
    runtime = load_runtime(tmp_path, HOOKED, TEXT_YAML)
    loaded.append(runtime)
    text = np.array([b"one", b"two words", b"and three words"], dtype=object)
    out = runtime.infer({"text": text})
    assert out["answer"].shape == (3,)
    assert [json.loads(item) for item in out["answer"]] == [
        {"words": 1, "batch": 3},
        {"words": 2, "batch": 3},
        {"words": 3, "batch": 3},
    ]


def test_encode_response_fills_bytes_rows_of_any_rank(
    tmp_path: Path, loaded: list[Runtime]
) -> None:
    source = """
        class Model:
            def decode_request(self, request):
                return request["text"].decode()

            def predict(self, texts):
                return texts

            def encode_response(self, text):
                return {"tokens": [text, text.upper(), {"n": len(text)}], "length": len(text)}
        """
    config = {
        **TEXT_YAML,
        "outputs": [
            {"name": "tokens", "datatype": "BYTES", "shape": [-1, 3]},
            {"name": "length", "datatype": "INT32", "shape": [-1]},
        ],
    }
    runtime = load_runtime(tmp_path, source, config)
    loaded.append(runtime)
    out = runtime.infer({"text": np.array([b"ab", b"xyz"], dtype=object)})
    assert out["tokens"].tolist() == [[b"ab", b"AB", b'{"n":2}'], [b"xyz", b"XYZ", b'{"n":3}']]
    assert out["length"].dtype == np.int32
    assert out["length"].tolist() == [2, 3]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "def predict(self, batch):\n        return batch[:1]",
            "Model.predict returned 1 outputs for 2 rows",
        ),
        (
            "def predict(self, batch):\n        return {'answer': batch}",
            "Model.predict returned dict; expected a list with one output per request row",
        ),
    ],
)
def test_wrong_number_of_outputs_is_an_internal_error(
    tmp_path: Path, loaded: list[Runtime], source: str, message: str
) -> None:
    model = f"""
class Model:
    def decode_request(self, request):
        return request["text"]

    {source}

    def encode_response(self, output):
        return {{"answer": output}}
"""
    runtime = load_runtime(tmp_path, model, TEXT_YAML)
    loaded.append(runtime)
    with pytest.raises(InternalError, match=message):
        runtime.infer({"text": np.array([b"a", b"b"], dtype=object)})


def test_tensor_predict_must_return_a_dict(tmp_path: Path, loaded: list[Runtime]) -> None:
    source = """
        class Model:
            def predict(self, inputs):
                return inputs["x"]
        """
    runtime = load_runtime(tmp_path, source, TENSOR_YAML)
    loaded.append(runtime)
    with pytest.raises(InternalError, match="expected a dict of arrays by output name"):
        runtime.infer({"x": np.ones((1, 2), np.float32)})


BAD_MODELS = [
    ("class Other:\n    pass", "define class Model with a predict(self, inputs) method"),
    ("class Model:\n    def predict(self):\n        pass", "predict must take one argument"),
    (
        "class Model:\n    def setup(self, device):\n        pass\n"
        "    def predict(self, x):\n        return x",
        "Model.setup() is not called by inferd; name it load(self, context)",
    ),
    (
        "class Model:\n    def initialize(self, args):\n        pass\n"
        "    def execute(self, requests):\n        return requests",
        "Model.initialize() is not called by inferd; name it load(self, context)",
    ),
    (
        "class Model:\n    def load(self, context, device):\n        pass\n"
        "    def predict(self, x):\n        return x",
        "Model.load must take (self) or (self, context); it takes (context, device)",
    ),
    (
        "class Model:\n    def __init__(self, path):\n        pass\n"
        "    def predict(self, x):\n        return x",
        "Model() must take no arguments; read settings in load()",
    ),
    (
        "class Model:\n    async def decode_request(self, r):\n        return r\n"
        "    def predict(self, x):\n        return x",
        "Model.decode_request must be a plain method (def); only predict may be async",
    ),
    (
        "class Model:\n    def batch(self, items):\n        return items\n"
        "    def predict(self, x):\n        return x",
        "Model.batch is used only with decode_request; define decode_request",
    ),
    (
        "class Model:\n    def unbatch(self, out):\n        return out\n"
        "    def predict(self, x):\n        return x",
        "Model.unbatch is used only with encode_response; define encode_response",
    ),
    (
        "class Model:\n    def encode_response(self):\n        return {}\n"
        "    def predict(self, x):\n        return x",
        "Model.encode_response must take one argument",
    ),
    (
        "class Model:\n    async def load(self, context):\n        pass\n"
        "    def predict(self, x):\n        return x",
        "Model.load must be a plain method (def)",
    ),
    (
        "class Model:\n    def unload(self, now):\n        pass\n"
        "    def predict(self, x):\n        return x",
        "Model.unload must take no arguments besides self",
    ),
]


@pytest.mark.parametrize(("source", "message"), BAD_MODELS)
def test_wrong_models_are_refused_at_load(tmp_path: Path, source: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_runtime(tmp_path, source, TEXT_YAML)


def test_unload_calls_the_model_unload(tmp_path: Path) -> None:
    source = """
        class Model:
            def load(self, context):
                self.folder = context.folder

            def predict(self, inputs):
                return {"y": inputs["x"]}

            def unload(self):
                (self.folder / "unloaded").write_text("yes")
        """
    runtime = load_runtime(tmp_path, source, TENSOR_YAML)
    runtime.unload()
    assert (tmp_path / "m" / "1" / "unloaded").read_text() == "yes"


ASYNC_MODEL = """
    import asyncio
    import threading

    class Model:
        def decode_request(self, request):
            return request["text"].decode()

        async def predict(self, texts):
            await asyncio.sleep(0)
            loop = id(asyncio.get_running_loop())
            return [(text, loop, threading.current_thread().name) for text in texts]

        def encode_response(self, output):
            text, loop, thread = output
            return {"answer": {"text": text, "loop": loop, "thread": thread}}
    """


async def test_async_predict_runs_on_a_loop_of_the_instance_thread(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    write_model(tmp_path / "talker", ASYNC_MODEL, TEXT_YAML)
    node = node_factory(tmp_path)
    async with await asgi_client(node) as client:
        answers = []
        for text in ("hello", "again"):
            response = await client.post(
                "/v2/models/talker/infer",
                json={
                    "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [text]}]
                },
            )
            assert response.status_code == 200, response.text
            answers.append(json.loads(response.json()["outputs"][0]["data"][0]))
    server_loop = id(asyncio.get_running_loop())
    assert [a["text"] for a in answers] == ["hello", "again"]
    assert {a["thread"] for a in answers} == {"infer-talker_0"}
    # One private loop, kept by the instance thread between batches, never the server's.
    assert len({a["loop"] for a in answers}) == 1
    assert answers[0]["loop"] != server_loop


async def test_text_model_over_v2_json(tmp_path: Path, node_factory: NodeFactory) -> None:
    write_model(tmp_path / "words", HOOKED, TEXT_YAML)
    node = node_factory(tmp_path)
    async with await asgi_client(node) as client:
        response = await client.post(
            "/v2/models/words/infer",
            json={
                "inputs": [
                    {"name": "text", "datatype": "BYTES", "shape": [2], "data": ["a b", "c"]}
                ]
            },
        )
    assert response.status_code == 200, response.text
    output = response.json()["outputs"][0]
    assert output["datatype"] == "BYTES"
    assert output["shape"] == [2]
    assert [json.loads(item) for item in output["data"]] == [
        {"words": 2, "batch": 2},
        {"words": 1, "batch": 2},
    ]


async def test_a_wrong_hook_fails_the_version_with_the_reason(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    source = next(model for model, reason in BAD_MODELS if reason.startswith("Model.setup()"))
    write_model(tmp_path / "bad", source, TEXT_YAML)
    node = node_factory(tmp_path, server={"admin_token": "t"})
    async with await asgi_client(node) as client:
        answer = await client.post("/v2/repository/index", headers={"X-API-Key": "t"})
        index = answer.json()
    assert index[0]["state"] == "FAILED"
    assert "Model.setup() is not called by inferd" in index[0]["reason"]


def test_hooks_of_a_model_that_does_not_batch_see_the_whole_input(
    tmp_path: Path, loaded: list[Runtime]
) -> None:
    source = """
        class Model:
            def decode_request(self, request):
                return [item.decode() for item in request["text"]]

            def predict(self, items):
                return [" ".join(words) for words in items]

            def encode_response(self, sentence):
                return {"answer": {"sentence": sentence}}
        """
    config = {
        **TEXT_YAML,
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [3]}],
        "outputs": [{"name": "answer", "datatype": "BYTES", "shape": []}],
        "max_batch_size": 0,
    }
    runtime = load_runtime(tmp_path, source, config)
    loaded.append(runtime)
    out = runtime.infer({"text": np.array([b"a", b"b", b"c"], dtype=object)})
    assert out["answer"].shape == ()
    assert json.loads(out["answer"][()]) == {"sentence": "a b c"}


async def test_a_hook_that_returns_the_wrong_thing_is_an_internal_error(
    tmp_path: Path, node_factory: NodeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    source = """
        class Model:
            def decode_request(self, request):
                return request["text"]

            def predict(self, batch):
                return batch[1:]  # one output short

            def encode_response(self, output):
                return {"answer": output}
        """
    write_model(tmp_path / "short", source, {**TEXT_YAML, "warmup": False})
    node = node_factory(tmp_path)
    body = {
        "id": "r-7",
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]}],
    }
    async with await asgi_client(node) as client:
        response = await client.post(
            "/v2/models/short/infer", json=body, headers={"X-Request-Id": "r-7"}
        )
    assert response.status_code == 500
    assert response.json() == {"error": "internal error (request id r-7)", "request_id": "r-7"}
    assert "Model.predict returned 1 outputs for 2 rows" in caplog.text


@pytest.mark.parametrize("kind", ["def", "async def"])
def test_a_generator_predict_streams_its_partials(
    tmp_path: Path, loaded: list[Runtime], kind: str
) -> None:
    pause = "await asyncio.sleep(0)" if kind == "async def" else "pass"
    source = f"""
import asyncio


class Model:
    def decode_request(self, request):
        return request["text"].decode()

    {kind} predict(self, texts):
        for word in texts[0].split():
            {pause}
            yield [word.upper()]

    def encode_response(self, output):
        return {{"answer": output}}
"""
    runtime = load_runtime(tmp_path, source, TEXT_YAML)
    loaded.append(runtime)
    assert runtime.decoupled
    partials = runtime.stream({"text": np.array([b"one two three"], dtype=object)})
    assert [p["answer"].tolist() for p in partials] == [[b"ONE"], [b"TWO"], [b"THREE"]]


def test_closing_a_stream_closes_the_generator(tmp_path: Path, loaded: list[Runtime]) -> None:
    source = """
import numpy as np

closed = []


class Model:
    def predict(self, inputs):
        try:
            while True:
                yield {"y": inputs["x"]}
        finally:
            closed.append(True)

    def unload(self):
        assert closed == [True]
"""
    runtime = load_runtime(tmp_path, source, TENSOR_YAML)
    partials = runtime.stream({"x": np.ones((1, 2), np.float32)})
    assert next(partials)["y"].tolist() == [[1.0, 1.0]]
    partials.close()  # type: ignore[attr-defined]
    runtime.unload()  # asserts the generator's finally ran
