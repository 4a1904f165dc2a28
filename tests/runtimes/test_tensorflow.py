"""The TensorFlow runtime: signatures, BYTES tensors and the errors a bad SavedModel gets."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from inferd.core.store.model_config import ModelConfig
from inferd.core.store.repository import Repository
from inferd.core.store.versions import runtime_options
from inferd.errors import ConfigError, ModelLoadError
from inferd.example import TINY, mlp_reference, mlp_weights, write_savedmodel
from inferd.runtimes.base import runtime_class
from inferd.runtimes.tensorflow import TensorFlowRuntime
from inferd.settings import PerformanceSettings
from tests.conftest import NodeFactory, asgi_client


class _TwoSignatures(tf.Module):  # type: ignore[misc]
    """``serving_default`` upper-cases strings; ``scale`` doubles floats."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def upper(self, text: Any) -> dict[str, Any]:
        return {"upper": tf.strings.upper(text), "length": tf.strings.length(text)}

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    def scale(self, x: Any) -> dict[str, Any]:
        return {"y": x * 2.0}


@pytest.fixture(scope="module")
def two_signatures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tf") / "model.savedmodel"
    module = _TwoSignatures()
    tf.saved_model.save(
        module, str(path), signatures={"serving_default": module.upper, "scale": module.scale}
    )
    return path


def _load(path: Path, **config: Any) -> TensorFlowRuntime:
    runtime = runtime_class("tensorflow")(runtime_options(ModelConfig.model_validate(config), path))
    assert isinstance(runtime, TensorFlowRuntime)
    runtime.load()
    return runtime


def test_bytes_in_and_out(two_signatures: Path) -> None:
    runtime = _load(two_signatures)
    signature = runtime.signature()
    assert [(s.name, s.datatype, s.shape) for s in signature.inputs] == [("text", "BYTES", (-1,))]
    assert [(s.name, s.datatype, s.shape) for s in signature.outputs] == [
        ("length", "INT32", (-1,)),
        ("upper", "BYTES", (-1,)),
    ]
    out = runtime.infer({"text": np.array([b"abc", "é!".encode()], dtype=object)})
    assert out["upper"].tolist() == [b"ABC", "é!".encode()]
    assert out["length"].tolist() == [3, 3]  # bytes, not characters
    runtime.unload()


def test_signature_named_in_model_yaml(two_signatures: Path) -> None:
    runtime = _load(two_signatures, signature="scale")
    assert [(s.name, s.datatype, s.shape) for s in runtime.signature().inputs] == [
        ("x", "FP32", (-1, 3))
    ]
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(runtime.infer({"x": x})["y"], x * 2)
    runtime.unload()


def test_inputs_are_cast_to_the_signature_dtype(two_signatures: Path) -> None:
    runtime = _load(two_signatures, signature="scale")
    out = runtime.infer({"x": np.ones((1, 3), dtype=np.float64)})["y"]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.full((1, 3), 2, dtype=np.float32))
    runtime.unload()


def test_unknown_signature_names_the_ones_there(two_signatures: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"no signature 'predict'.*\['scale', 'serving_default'\]"
    ):
        _load(two_signatures, signature="predict")


def test_reduced_precision_is_refused(tmp_path: Path) -> None:
    write_savedmodel(mlp_weights(TINY), tmp_path / "model.savedmodel")
    with pytest.raises(ConfigError, match="precision 'fp16' is not supported"):
        _load(tmp_path / "model.savedmodel", precision="fp16")


def test_a_folder_without_saved_model_pb_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.savedmodel").mkdir()
    with pytest.raises(ConfigError, match=r"not a SavedModel \(no saved_model\.pb inside\)"):
        _load(tmp_path / "model.savedmodel")


def test_a_corrupt_saved_model_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "model.savedmodel"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"not a protobuf")
    with pytest.raises(ModelLoadError, match="cannot load the SavedModel"):
        _load(folder)


def test_thread_counts_come_from_settings_unless_model_yaml_says(tmp_path: Path) -> None:
    config = ModelConfig.model_validate({"inter_op_threads": 3})
    performance = PerformanceSettings(intra_op_threads=2, inter_op_threads=1)
    runtime = runtime_class("tensorflow")(runtime_options(config, tmp_path, performance))
    assert (runtime.intra_op_threads, runtime.inter_op_threads) == (2, 3)


def test_thread_counts_a_process_already_fixed_are_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_savedmodel(mlp_weights(TINY), tmp_path / "model.savedmodel")
    _load(tmp_path / "model.savedmodel").unload()  # TensorFlow has run: its pools are fixed
    with caplog.at_level(logging.WARNING, logger="inferd.runtimes"):
        _load(tmp_path / "model.savedmodel", intra_op_threads=3).unload()
    assert "this model's 3 and 1 are not applied" in caplog.text


async def test_a_savedmodel_folder_is_a_repository_of_one_model(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    folder = tmp_path / "classifier.savedmodel"
    write_savedmodel(mlp_weights(TINY), folder)
    repository = Repository(folder)
    assert repository.model_names() == ["classifier"]
    assert repository.read("classifier").versions[0].runtime == "tensorflow"
    node = node_factory(folder)
    async with await asgi_client(node) as client:
        answer = await client.post("/predict", json={"inputs": [1, 2, 3, 4]})
    assert answer.status_code == 200, answer.text
    expected = mlp_reference(mlp_weights(TINY), np.array([[1, 2, 3, 4]], dtype=np.float32))
    np.testing.assert_allclose(answer.json()["predictions"], expected[0], rtol=1e-5)
