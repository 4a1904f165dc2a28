"""docs/export.md's TensorFlow recipe runs as written, and inferd serves what it writes.

tensorflow comes with inferd[tensorflow], which the dev extras include: `make test` always
runs this module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import yaml

from inferd.core.store.model_config import ModelConfig
from inferd.core.store.versions import runtime_options
from inferd.runtimes.base import runtime_class
from tests.test_export_docs import run_recipe


def test_tensorflow_recipe_writes_a_savedmodel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    names = run_recipe("TensorFlow → SavedModel", tmp_path)
    folder = tmp_path / "models" / "classifier_tf"
    config = yaml.safe_load((folder / "model.yaml").read_text())
    assert config["runtime"] == "tensorflow"
    x = np.random.default_rng(0).standard_normal((5, 4), dtype=np.float32)
    expected = tf.nn.softmax(names["keras_model"](x)).numpy()
    loaded = tf.saved_model.load(str(folder / "1" / "model.savedmodel"))
    serve = loaded.signatures["serving_default"]
    assert list(serve.structured_input_signature[1]) == ["input"]
    out = serve(input=tf.constant(x))
    assert list(out) == ["probabilities"]
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, rtol=1e-5, atol=1e-6)
    served = runtime_class("tensorflow")(
        runtime_options(ModelConfig.model_validate(config), folder / "1" / "model.savedmodel")
    )
    served.load()
    signature = served.signature()
    assert [(t.name, t.datatype, t.shape) for t in signature.inputs] == [("input", "FP32", (-1, 4))]
    assert [(t.name, t.shape) for t in signature.outputs] == [("probabilities", (-1, 3))]
    answer = served.infer({"input": x})["probabilities"]
    np.testing.assert_allclose(answer, expected, rtol=1e-5, atol=1e-6)
    served.unload()
