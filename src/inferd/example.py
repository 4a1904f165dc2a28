"""The example model repository, built by code with deterministic weights.

- ``tiny``: a 4 -> 64 -> 2 MLP as TorchScript (the shape of the seed's model), or as ONNX
  when torch is not installed.
- ``wide``: a 256 -> 2048 -> 2048 -> 16 MLP as ONNX.
- ``sentiment``: a Python text model (BYTES in, JSON out) using the request hooks.
- ``words``: a streaming Python model; it yields the words of its text one at a time.
- ``tiny-tf``: ``tiny``'s weights as a TensorFlow SavedModel, when TensorFlow is installed.

The same weights can be written in any of the formats, so the runtimes can be compared on
one model (tests and benchmarks do).
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import itertools
import json
import warnings
from pathlib import Path
from typing import Any, Final

import numpy as np
import yaml

Weights = list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]

TINY: Final = (4, 64, 2)
WIDE: Final = (256, 2048, 2048, 16)

#: The sentiment model's weights: word -> polarity.
LEXICON: Final = {
    "positive": ["good", "great", "excellent", "love", "like", "happy", "fast", "nice", "best"],
    "negative": ["bad", "awful", "terrible", "hate", "slow", "sad", "broken", "worst", "poor"],
}
SENTIMENT_YAML: Final = """\
runtime: python
inputs:
  - {name: text, datatype: BYTES, shape: [-1]}     # one UTF-8 text per row
outputs:
  - {name: result, datatype: BYTES, shape: [-1]}   # one JSON answer per row
max_batch_size: 16
parameters:
  neutral_below: 0.2
"""


def mlp_weights(sizes: tuple[int, ...], seed: int = 0) -> Weights:
    """Layer (weight [out, in], bias [out]) pairs, float32, He-scaled, from a fixed seed."""
    rng = np.random.default_rng(seed)
    layers = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        weight = rng.standard_normal((fan_out, fan_in), dtype=np.float32) * np.sqrt(2.0 / fan_in)
        bias = rng.standard_normal(fan_out, dtype=np.float32) * np.float32(0.1)
        layers.append((weight.astype(np.float32), bias.astype(np.float32)))
    return layers


def mlp_reference(weights: Weights, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The MLP in numpy: ReLU between layers, none after the last."""
    out = x.astype(np.float32)
    for i, (weight, bias) in enumerate(weights):
        out = out @ weight.T + bias
        if i < len(weights) - 1:
            out = np.maximum(out, 0)
    return out


def write_torchscript(weights: Weights, path: Path) -> None:
    import torch

    layers: list[torch.nn.Module] = []
    for i, (weight, bias) in enumerate(weights):
        linear = torch.nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(weight))
            linear.bias.copy_(torch.from_numpy(bias))
        layers.append(linear)
        if i < len(weights) - 1:
            layers.append(torch.nn.ReLU())
    with warnings.catch_warnings():
        # TorchScript is the artifact format inferd serves; its deprecation notice is noise here.
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.script(torch.nn.Sequential(*layers).eval())
    path.parent.mkdir(parents=True, exist_ok=True)
    module.save(str(path))


def write_onnx(
    weights: Weights, path: Path, input_name: str = "input", output_name: str = "output"
) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, initializers = [], []
    current = input_name
    for i, (weight, bias) in enumerate(weights):
        initializers += [
            numpy_helper.from_array(weight, f"w{i}"),
            numpy_helper.from_array(bias, f"b{i}"),
        ]
        last = i == len(weights) - 1
        gemm_out = output_name if last else f"h{i}"
        nodes.append(helper.make_node("Gemm", [current, f"w{i}", f"b{i}"], [gemm_out], transB=1))
        if not last:
            nodes.append(helper.make_node("Relu", [gemm_out], [f"r{i}"]))
            current = f"r{i}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [
            helper.make_tensor_value_info(
                input_name, TensorProto.FLOAT, ["batch", weights[0][0].shape[1]]
            )
        ],
        [
            helper.make_tensor_value_info(
                output_name, TensorProto.FLOAT, ["batch", weights[-1][0].shape[0]]
            )
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def write_savedmodel(
    weights: Weights, path: Path, input_name: str = "input", output_name: str = "output"
) -> None:
    """The MLP as a SavedModel folder whose ``serving_default`` signature maps
    ``input_name`` [-1, in] to ``output_name`` [-1, out]."""
    import tensorflow as tf

    class Mlp(tf.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.layers = [(tf.constant(w.T), tf.constant(b)) for w, b in weights]

        def __call__(self, x: Any) -> dict[str, Any]:
            for i, (weight, bias) in enumerate(self.layers):
                x = tf.matmul(x, weight) + bias
                if i < len(self.layers) - 1:
                    x = tf.nn.relu(x)
            return {output_name: x}

    module = Mlp()
    spec = tf.TensorSpec([None, weights[0][0].shape[1]], tf.float32, name=input_name)
    serve = tf.function(lambda x: module(x), input_signature=[spec])
    path.parent.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve})


def tensor_yaml(sizes: tuple[int, ...], runtime: str, **extra: Any) -> str:
    doc = {
        "runtime": runtime,
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, sizes[0]]}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, sizes[-1]]}],
        **extra,
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write_starter(starter: str, path: Path) -> None:
    """Copy one of the model files of ``inferd.starters`` to ``path``."""
    source = importlib.resources.files("inferd.starters").joinpath(f"{starter}.py").read_text()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)


WORDS_YAML: Final = """\
# predict is a generator: the model streams (README, Streaming models).
runtime: python
inputs:
  - {name: text_input, datatype: BYTES, shape: [1]}
outputs:
  - {name: text_output, datatype: BYTES, shape: [1]}
"""


def tensorflow_installed() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


def build_example(
    root: Path, with_tensorflow: bool | None = None, with_torch: bool | None = None
) -> list[Path]:
    """Write the example repository under ``root``; returns the artifacts written.
    ``tiny-tf`` is written when ``with_tensorflow`` (default: when TensorFlow is installed);
    ``tiny`` is TorchScript when ``with_torch`` (default: when torch is installed), else
    ONNX with the same weights, so the default install (ONNX only) serves every example but
    tiny-tf."""
    tiny = root / "tiny"
    if torch_installed() if with_torch is None else with_torch:
        write_torchscript(mlp_weights(TINY, seed=0), tiny / "1" / "model.pt")
        (tiny / "model.yaml").write_text(tensor_yaml(TINY, "torchscript"))
        tiny_artifact = tiny / "1" / "model.pt"
    else:
        write_onnx(mlp_weights(TINY, seed=0), tiny / "1" / "model.onnx")
        (tiny / "model.yaml").write_text(tensor_yaml(TINY, "onnx"))
        tiny_artifact = tiny / "1" / "model.onnx"
    wide = root / "wide"
    write_onnx(mlp_weights(WIDE, seed=1), wide / "1" / "model.onnx")
    (wide / "model.yaml").write_text(
        "# Inputs and outputs are read from the ONNX graph.\nmax_batch_size: 64\n"
    )
    sentiment = root / "sentiment"
    write_starter("sentiment", sentiment / "1" / "model.py")
    (sentiment / "1" / "lexicon.json").write_text(json.dumps(LEXICON, indent=2) + "\n")
    (sentiment / "model.yaml").write_text(SENTIMENT_YAML)
    words = root / "words"
    write_starter("words", words / "1" / "model.py")
    (words / "model.yaml").write_text(WORDS_YAML)
    written = [
        tiny_artifact,
        wide / "1" / "model.onnx",
        sentiment / "1" / "model.py",
        words / "1" / "model.py",
    ]
    if not (tensorflow_installed() if with_tensorflow is None else with_tensorflow):
        return written
    tiny_tf = root / "tiny-tf"
    write_savedmodel(mlp_weights(TINY, seed=0), tiny_tf / "1" / "model.savedmodel")
    (tiny_tf / "model.yaml").write_text(
        "# Inputs and outputs are read from the serving_default signature.\nmax_batch_size: 32\n"
    )
    return [*written, tiny_tf / "1" / "model.savedmodel"]
