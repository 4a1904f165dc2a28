"""docs/export.md's TensorFlow recipe runs as written where tensorflow is installed.

inferd does not depend on tensorflow; without it this module is skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.test_export_docs import run_recipe

tf = pytest.importorskip("tensorflow")


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
