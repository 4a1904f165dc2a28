"""TensorFlow SavedModels, loaded with ``tf.saved_model.load`` and run through a signature.

Inputs and outputs are read from a signature of the SavedModel: ``serving_default`` unless
``model.yaml`` names another (``signature:``); their names are the signature's keys. The
TF2 loader is used rather than a v1 session because only it restores every SavedModel
that TF2 writes (a Keras 3 model saved inside a ``tf.Module`` leaves variables that a v1
session never initialises).

TensorFlow's intra- and inter-op thread pools belong to the process and are fixed once the
first TensorFlow operation has run: the first model to load sets them from its settings,
and a later model that asks for other counts is logged as not getting them.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Final

import numpy as np
import tensorflow as tf

from inferd.errors import ConfigError, ModelLoadError
from inferd.runtimes.base import Arrays, Runtime, Signature
from inferd.types import TensorSpec

log = logging.getLogger("inferd.runtimes")

#: TensorFlow dtype names -> V2 datatypes.
TF_DATATYPES: Final[dict[str, str]] = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
    "bfloat16": "BF16",
    "string": "BYTES",
}

DEFAULT_SIGNATURE: Final = "serving_default"
SERVE_TAG: Final = "serve"
_threads_lock = threading.Lock()


def _apply_threads(intra: int, inter: int, where: str) -> None:
    """Set the process's TensorFlow thread counts if no TensorFlow operation ran yet;
    log when they were already fixed at other values."""
    config = tf.config.threading
    with _threads_lock:
        try:
            config.set_intra_op_parallelism_threads(intra)
            config.set_inter_op_parallelism_threads(inter)
        except RuntimeError:
            pass  # the runtime context exists: the counts are fixed for this process
        current = (
            config.get_intra_op_parallelism_threads(),
            config.get_inter_op_parallelism_threads(),
        )
    if current != (intra, inter):
        log.warning(
            "%s: TensorFlow's thread counts are per process and were already fixed at "
            "intra_op_threads=%d, inter_op_threads=%d; this model's %d and %d are not applied",
            where,
            *current,
            intra,
            inter,
        )


def _device(device: str) -> str:
    if device == "cpu":
        return "/CPU:0"
    return f"/GPU:{device.partition(':')[2] or '0'}"


class TensorFlowRuntime(Runtime):
    _loaded: Any = None
    _function: Any = None

    def load(self) -> None:
        if self.options.precision != "fp32":
            raise ConfigError(
                f"{self.artifact}: precision {self.options.precision!r} is not supported by the "
                "tensorflow runtime; save the model in the precision to serve (fp32 here)"
            )
        if not (self.artifact / "saved_model.pb").is_file():
            raise ConfigError(f"{self.artifact}: not a SavedModel (no saved_model.pb inside)")
        _apply_threads(self.intra_op_threads, self.inter_op_threads, str(self.artifact))
        self._device = _device(self.options.device)
        try:
            with tf.device(self._device):
                loaded = tf.saved_model.load(str(self.artifact), tags=[SERVE_TAG])
        except (RuntimeError, ValueError, OSError, tf.errors.OpError) as exc:
            raise ModelLoadError(f"{self.artifact}: cannot load the SavedModel: {exc}") from exc
        name = self.options.signature or DEFAULT_SIGNATURE
        if name not in loaded.signatures:
            raise ConfigError(
                f"{self.artifact}: no signature {name!r}; the SavedModel has "
                f"{sorted(loaded.signatures)}"
            )
        function = loaded.signatures[name]
        inputs = sorted(function.structured_input_signature[1].items())
        outputs = sorted(function.structured_outputs.items())
        self._inputs = tuple(self._spec(key, spec) for key, spec in inputs)
        self._outputs = tuple(self._spec(key, spec) for key, spec in outputs)
        self._feed = [(key, spec.dtype.as_numpy_dtype) for key, spec in inputs]
        # The signature holds its variables weakly: the loaded object must stay referenced.
        self._loaded, self._function = loaded, function

    def _spec(self, key: str, spec: Any) -> TensorSpec:
        datatype = TF_DATATYPES.get(spec.dtype.name)
        if datatype is None:
            raise ModelLoadError(
                f"{self.artifact}: tensor {key!r} has type {spec.dtype.name}, which inferd "
                f"cannot serve; expected one of {sorted(TF_DATATYPES)}"
            )
        if spec.shape.rank is None:
            raise ModelLoadError(
                f"{self.artifact}: tensor {key!r} has an unknown rank; give the signature a "
                "shape (tf.TensorSpec([None, ...]))"
            )
        return TensorSpec(key, datatype, tuple(-1 if d is None else d for d in spec.shape))

    def signature(self) -> Signature:
        return Signature(self._inputs, self._outputs)

    def infer(self, inputs: Arrays) -> Arrays:
        feed = {}
        for name, dtype in self._feed:
            array = inputs[name]
            if dtype is not object and array.dtype != dtype:
                array = array.astype(dtype)
            feed[name] = tf.constant(array)
        with tf.device(self._device):
            results = self._function(**feed)
        outputs: Arrays = {}
        for name, tensor in results.items():
            array = tensor.numpy()
            if array.dtype.name == "bfloat16":
                array = array.astype(np.float32)  # the core holds BF16 as float32
            outputs[name] = array
        return outputs

    def unload(self) -> None:
        self._loaded = self._function = None
