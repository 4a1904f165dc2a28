"""Building minilm: the safetensors reader and what `inferd example --text` writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from inferd.text.build import package_dir, read_safetensors


def test_safetensors_reader_matches_the_reference_reader() -> None:
    path = package_dir() / "model.safetensors"
    ours, theirs = read_safetensors(path), load_file(str(path))
    assert set(ours) == set(theirs)
    for name, array in theirs.items():
        assert ours[name].dtype == array.dtype, name
        np.testing.assert_array_equal(ours[name], array, err_msg=name)


def test_example_text_writes_the_model_folder(text_repo: Path) -> None:
    version = text_repo / "minilm" / "1"
    assert sorted(p.name for p in version.iterdir()) == [
        "encoder.onnx",
        "model.py",
        "tokenizer.json",
    ]
    assert "runtime: python" in (text_repo / "minilm" / "model.yaml").read_text()
    # minilm as a pipeline of three served models, beside it.
    assert sorted(p.name for p in (text_repo / "minilm-encoder" / "1").iterdir()) == ["model.onnx"]
    assert "pipeline:" in (text_repo / "minilm-pipeline" / "model.yaml").read_text()
    assert not any(p.is_dir() for p in (text_repo / "minilm-pipeline").iterdir())
    # The rest of the example repository is written too.
    assert {"tiny", "wide", "minilm"} <= {p.name for p in text_repo.iterdir()}
