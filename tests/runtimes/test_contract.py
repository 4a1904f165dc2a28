"""One contract, every runtime: the same MLP served by TorchScript, ONNX Runtime, TensorFlow
and Python."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from inferd.core.store.model_config import ModelConfig
from inferd.core.store.versions import runtime_options
from inferd.errors import ConfigError
from inferd.example import (
    TINY,
    mlp_reference,
    mlp_weights,
    tensor_yaml,
    write_onnx,
    write_savedmodel,
    write_torchscript,
)
from inferd.runtimes.base import Runtime, runtime_class

WEIGHTS = mlp_weights(TINY, seed=0)

PYTHON_MODEL = """
import numpy as np

class Model:
    def load(self):
        data = np.load(__file__.replace("model.py", "weights.npz"))
        self.layers = [(data[f"w{i}"], data[f"b{i}"]) for i in range(len(data.files) // 2)]

    def predict(self, inputs):
        out = inputs["input"]
        for i, (w, b) in enumerate(self.layers):
            out = out @ w.T + b
            if i < len(self.layers) - 1:
                out = np.maximum(out, 0)
        return {"output": out.astype(np.float32)}
"""


def _write(kind: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "torchscript":
        write_torchscript(WEIGHTS, folder / "model.pt")
        return folder / "model.pt"
    if kind == "onnx":
        write_onnx(WEIGHTS, folder / "model.onnx")
        return folder / "model.onnx"
    if kind == "tensorflow":
        write_savedmodel(WEIGHTS, folder / "model.savedmodel")
        return folder / "model.savedmodel"
    arrays = {}
    for i, (w, b) in enumerate(WEIGHTS):
        arrays[f"w{i}"], arrays[f"b{i}"] = w, b
    np.savez(folder / "weights.npz", **arrays)
    (folder / "model.py").write_text(PYTHON_MODEL)
    return folder / "model.py"


@pytest.fixture(scope="module", params=["torchscript", "onnx", "tensorflow", "python"])
def runtime(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Runtime]:
    kind: str = request.param
    artifact = _write(kind, tmp_path_factory.mktemp(kind))
    config = ModelConfig.model_validate(yaml.safe_load(tensor_yaml(TINY, kind)))
    instance = runtime_class(kind)(runtime_options(config, artifact))
    instance.load()
    yield instance
    instance.unload()


@pytest.mark.parametrize("rows", [1, 3, 32])
def test_infer_matches_reference(runtime: Runtime, rows: int) -> None:
    x = np.random.default_rng(rows).standard_normal((rows, 4), dtype=np.float32)
    out = runtime.infer({"input": x})
    assert set(out) == {"output"}
    assert out["output"].shape == (rows, 2)
    np.testing.assert_allclose(out["output"], mlp_reference(WEIGHTS, x), rtol=1e-5, atol=1e-5)


def test_read_only_input_is_accepted(runtime: Runtime) -> None:
    x = np.frombuffer(np.ones((2, 4), dtype=np.float32).tobytes(), dtype=np.float32).reshape(2, 4)
    assert runtime.infer({"input": x})["output"].shape == (2, 2)


def test_signature(runtime: Runtime) -> None:
    signature = runtime.signature()
    if runtime.options.model_yaml.runtime in ("torchscript", "python"):
        assert signature is None  # these declare their tensors in model.yaml
        return
    assert signature is not None
    assert [(s.name, s.datatype, s.shape) for s in signature.inputs] == [("input", "FP32", (-1, 4))]
    assert [(s.name, s.datatype, s.shape) for s in signature.outputs] == [
        ("output", "FP32", (-1, 2))
    ]


@pytest.mark.parametrize("kind", ["torchscript", "python"])
def test_undeclared_tensors_are_refused(kind: str, tmp_path: Path) -> None:
    artifact = _write(kind, tmp_path)
    with pytest.raises(ConfigError, match=r"declare its inputs and outputs in model\.yaml"):
        runtime_class(kind)(runtime_options(ModelConfig(), artifact)).load()


def test_unknown_runtime() -> None:
    with pytest.raises(ConfigError, match="unknown runtime"):
        runtime_class("tensorrt")


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_torchscript_reduced_precision(precision: str, tmp_path: Path) -> None:
    artifact = _write("torchscript", tmp_path)
    config = ModelConfig.model_validate(
        {**yaml.safe_load(tensor_yaml(TINY, "torchscript")), "precision": precision}
    )
    instance = runtime_class("torchscript")(runtime_options(config, artifact))
    instance.load()
    x = np.random.default_rng(0).standard_normal((4, 4), dtype=np.float32)
    out = instance.infer({"input": x})["output"]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, mlp_reference(WEIGHTS, x), rtol=0.05, atol=0.05)


class _PlusOne(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1.0


class _Exported(torch.nn.Module):
    @torch.jit.export
    def other(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _times_ten(module: torch.nn.Module, inputs: tuple[torch.Tensor]) -> tuple[torch.Tensor]:
    return (inputs[0] * 10.0,)


def _times_hundred(
    module: torch.nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor
) -> torch.Tensor:
    return output * 100.0


def _torchscript(module: torch.nn.Module, folder: Path) -> Runtime:
    folder.mkdir()
    torch.jit.save(torch.jit.script(module), folder / "model.pt")
    shape = {"datatype": "FP32", "shape": [-1, 4]}
    config = ModelConfig.model_validate(
        {
            "inputs": [{"name": "input", **shape}],
            "outputs": [{"name": "output", **shape}],
            "runtime": "torchscript",
        }
    )
    return runtime_class("torchscript")(runtime_options(config, folder / "model.pt"))


def test_torchscript_hooks_compiled_into_the_module_run(tmp_path: Path) -> None:
    """A module without hooks is run by its compiled forward; one saved with hooks still
    runs them."""
    hooked = _PlusOne()
    hooked.register_forward_pre_hook(_times_ten)
    hooked.register_forward_hook(_times_hundred)
    x = np.ones((2, 4), dtype=np.float32)
    for module, expected in ((_PlusOne(), 2.0), (hooked, 1100.0)):
        instance = _torchscript(module, tmp_path / str(expected))
        instance.load()
        np.testing.assert_array_equal(instance.infer({"input": x})["output"], x * expected)
        instance.unload()


def test_torchscript_module_without_forward_is_refused(tmp_path: Path) -> None:
    instance = _torchscript(_Exported(), tmp_path / "exported")
    with pytest.raises(ConfigError, match="has no forward method"):
        instance.load()


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_onnx_reduced_precision_is_refused(precision: str, tmp_path: Path) -> None:
    artifact = _write("onnx", tmp_path)
    config = ModelConfig.model_validate({"precision": precision})
    with pytest.raises(ConfigError) as refused:
        runtime_class("onnx")(runtime_options(config, artifact)).load()
    assert f"precision '{precision}' is not supported by the onnx runtime" in refused.value.message
