"""TensorFlow SavedModels, run through a session of their own.

Inputs and outputs are read from a signature of the SavedModel's ``serve`` graph:
``serving_default`` unless ``model.yaml`` names another (``signature:``). The model gets a
``tf.compat.v1.Session`` of its own rather than the process-wide eager context, so its
intra- and inter-op thread counts and its device are its own, and one ``Session.run`` (which
releases the GIL) is the only TensorFlow call per batch.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import numpy as np
import tensorflow as tf

from inferd.errors import ConfigError, ModelLoadError
from inferd.runtimes.base import Arrays, Runtime, Signature
from inferd.types import TensorSpec

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


def _session_config(device: str, intra: int, inter: int) -> Any:
    config = tf.compat.v1.ConfigProto(
        intra_op_parallelism_threads=intra,
        inter_op_parallelism_threads=inter,
        allow_soft_placement=True,
    )
    if device == "cpu":
        config.device_count["GPU"] = 0
    else:
        config.gpu_options.visible_device_list = device.partition(":")[2] or "0"
        config.gpu_options.allow_growth = True
    return config


class TensorFlowRuntime(Runtime):
    _session: Any = None

    def load(self) -> None:
        if self.config.precision != "fp32":
            raise ConfigError(
                f"{self.artifact}: precision {self.config.precision!r} is not supported by the "
                "tensorflow runtime; save the model in the precision to serve (fp32 here)"
            )
        if not (self.artifact / "saved_model.pb").is_file():
            raise ConfigError(f"{self.artifact}: not a SavedModel (no saved_model.pb inside)")
        graph = tf.Graph()
        session = tf.compat.v1.Session(
            graph=graph,
            config=_session_config(
                self.config.device, self.intra_op_threads, self.inter_op_threads
            ),
        )
        try:
            self._bind(session, graph)
        except BaseException:
            session.close()
            raise
        self._session = session

    def _bind(self, session: Any, graph: Any) -> None:
        """Load the SavedModel into ``session`` and make the signature's callable."""
        # The v1 loader logs a deprecation notice on every load; it is the loader meant here.
        tf_logger = logging.getLogger("tensorflow")
        level = tf_logger.level
        tf_logger.setLevel(logging.ERROR)
        try:
            with graph.as_default():
                meta_graph = tf.compat.v1.saved_model.loader.load(
                    session, [SERVE_TAG], str(self.artifact)
                )
        except (RuntimeError, ValueError, OSError, tf.errors.OpError) as exc:
            raise ModelLoadError(f"{self.artifact}: cannot load the SavedModel: {exc}") from exc
        finally:
            tf_logger.setLevel(level)
        name = self.config.signature or DEFAULT_SIGNATURE
        if name not in meta_graph.signature_def:
            raise ConfigError(
                f"{self.artifact}: no signature {name!r}; the SavedModel has "
                f"{sorted(k for k in meta_graph.signature_def if not k.startswith('__'))}"
            )
        signature = meta_graph.signature_def[name]
        inputs, outputs = sorted(signature.inputs.items()), sorted(signature.outputs.items())
        self._inputs = [self._spec(key, info) for key, info in inputs]
        self._outputs = [self._spec(key, info) for key, info in outputs]
        self._input_names = [key for key, _ in inputs]
        self._output_names = [key for key, _ in outputs]
        self._feed_dtypes = [tf.dtypes.as_dtype(info.dtype).as_numpy_dtype for _, info in inputs]
        self._call = session.make_callable(
            [info.name for _, info in outputs], [info.name for _, info in inputs]
        )

    def _spec(self, key: str, info: Any) -> TensorSpec:
        dtype = tf.dtypes.as_dtype(info.dtype).name
        datatype = TF_DATATYPES.get(dtype)
        if datatype is None:
            raise ModelLoadError(
                f"{self.artifact}: tensor {key!r} has type {dtype}, which inferd cannot serve; "
                f"expected one of {sorted(TF_DATATYPES)}"
            )
        if info.tensor_shape.unknown_rank:
            raise ModelLoadError(
                f"{self.artifact}: tensor {key!r} has an unknown rank; give the signature a "
                "shape (tf.TensorSpec([None, ...]))"
            )
        shape = tuple(dim.size if dim.size >= 0 else -1 for dim in info.tensor_shape.dim)
        return TensorSpec(key, datatype, shape)

    def signature(self) -> Signature:
        return Signature(tuple(self._inputs), tuple(self._outputs))

    def infer(self, inputs: Arrays) -> Arrays:
        feed = []
        for name, dtype in zip(self._input_names, self._feed_dtypes, strict=True):
            array = inputs[name]
            if dtype is not object and array.dtype != dtype:
                array = array.astype(dtype)
            feed.append(array)
        results = self._call(*feed)
        outputs: Arrays = {}
        for name, result in zip(self._output_names, results, strict=True):
            array = np.asarray(result)
            if array.dtype.name == "bfloat16":
                array = array.astype(np.float32)  # the core holds BF16 as float32
            outputs[name] = array
        return outputs

    def unload(self) -> None:
        if self._session is not None:
            self._session.close()
        self._session = None
