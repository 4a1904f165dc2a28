"""tritonclient.http against a real server: defaults (binary both ways) and JSON."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from inferd.example import TINY, WIDE, mlp_reference, mlp_weights
from tests.conftest import ServerProcess

MODELS = {"tiny": (TINY, mlp_weights(TINY, seed=0)), "wide": (WIDE, mlp_weights(WIDE, seed=1))}

# Datatype -> numpy dtype for an identity model that echoes every input.
IDENTITY_TYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}


@pytest.fixture(scope="module")
def client(live_server: ServerProcess) -> Iterator[httpclient.InferenceServerClient]:
    with httpclient.InferenceServerClient(live_server.url.removeprefix("http://")) as triton:
        yield triton


@pytest.fixture(scope="module")
def identity_client(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[httpclient.InferenceServerClient]:
    root = tmp_path_factory.mktemp("identity")
    folder = root / "identity"
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.py").write_text(
        "class Model:\n"
        "    def predict(self, inputs):\n"
        "        return {name.replace('in_', 'out_'): value for name, value in inputs.items()}\n"
    )
    lines = ["runtime: python", "inputs:"]
    for dt in IDENTITY_TYPES:
        lines.append(f"  - {{name: in_{dt}, datatype: {dt}, shape: [-1, 3]}}")
    lines.append("outputs:")
    for dt in IDENTITY_TYPES:
        lines.append(f"  - {{name: out_{dt}, datatype: {dt}, shape: [-1, 3]}}")
    (folder / "model.yaml").write_text("\n".join(lines) + "\n")
    server = ServerProcess(root, "--grpc-port", "0")
    try:
        server.wait_ready()
        with httpclient.InferenceServerClient(server.url.removeprefix("http://")) as triton:
            yield triton
    finally:
        server.stop()


def test_health_and_metadata(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("tiny")
    assert client.is_model_ready("wide", "1")
    meta = client.get_model_metadata("wide")
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"][0]["shape"] == [-1, 256]
    config = client.get_model_config("tiny")
    assert config["max_batch_size"] == 32
    assert config["input"][0]["dims"] == [4]
    assert client.get_server_metadata()["name"] == "inferd"
    stats = client.get_inference_statistics("tiny")
    assert stats["model_stats"][0]["name"] == "tiny"


@pytest.mark.parametrize("model", ["tiny", "wide"])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_matches_the_model_in_process(
    client: httpclient.InferenceServerClient, model: str, binary: bool
) -> None:
    sizes, weights = MODELS[model]
    x = np.random.default_rng(3).standard_normal((5, sizes[0]), dtype=np.float32)
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    out = httpclient.InferRequestedOutput("output", binary_data=binary)
    result = client.infer(model, [inp], outputs=[out], request_id="abc")
    assert result.get_response()["id"] == "abc"
    np.testing.assert_allclose(
        result.as_numpy("output"), mlp_reference(weights, x), rtol=1e-4, atol=1e-4
    )


def test_infer_with_all_defaults(client: httpclient.InferenceServerClient) -> None:
    x = np.ones((1, 4), dtype=np.float32)
    inp = httpclient.InferInput("input", [1, 4], "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("tiny", [inp])
    np.testing.assert_allclose(
        result.as_numpy("output"), mlp_reference(MODELS["tiny"][1], x), rtol=1e-5
    )


def test_errors_surface_as_exceptions(client: httpclient.InferenceServerClient) -> None:
    inp = httpclient.InferInput("input", [1, 5], "FP32")
    inp.set_data_from_numpy(np.ones((1, 5), dtype=np.float32))
    with pytest.raises(InferenceServerException, match=r"expected shape \[-1, 4\]"):
        client.infer("tiny", [inp])
    assert client.is_server_live()


def _identity_inputs(binary: bool) -> tuple[list[httpclient.InferInput], dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    inputs, arrays = [], {}
    for dt, dtype in IDENTITY_TYPES.items():
        if dt == "BYTES":
            array = np.array(
                [[b"a", b"bc", "d\u00e9".encode()], [b"", b"x" * 50, b"z"]], dtype=object
            )
        elif dt == "BOOL":
            array = rng.integers(0, 2, (2, 3)).astype(bool)
        elif np.dtype(dtype).kind == "f":
            array = rng.standard_normal((2, 3)).astype(dtype)
        else:
            info = np.iinfo(dtype)
            array = np.array([[info.min, 0, 1], [info.max, 2, 3]], dtype=dtype)
        inp = httpclient.InferInput(f"in_{dt}", [2, 3], dt)
        inp.set_data_from_numpy(array, binary_data=binary)
        inputs.append(inp)
        arrays[dt] = array
    return inputs, arrays


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_every_datatype_round_trips(
    identity_client: httpclient.InferenceServerClient, binary: bool
) -> None:
    inputs, arrays = _identity_inputs(binary)
    outputs = [
        httpclient.InferRequestedOutput(f"out_{dt}", binary_data=binary) for dt in IDENTITY_TYPES
    ]
    result = identity_client.infer("identity", inputs, outputs=outputs)
    for dt, array in arrays.items():
        got = result.as_numpy(f"out_{dt}")
        assert got is not None, dt
        if dt == "BYTES":
            assert [
                bytes(v) if not isinstance(v, str) else v.encode() for v in got.ravel()
            ] == list(array.ravel())
        else:
            assert got.dtype == array.dtype, dt
            np.testing.assert_array_equal(got, array, err_msg=dt)
