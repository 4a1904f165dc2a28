"""ONNX models through ONNX Runtime; inputs and outputs are read from the graph."""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import onnxruntime as ort

from inferd.errors import ConfigError
from inferd.runtimes.base import Arrays, Runtime, Signature
from inferd.types import DATATYPE_TO_NUMPY, TensorSpec

#: ONNX Runtime's type strings -> V2 datatypes.
ORT_DATATYPES: Final[dict[str, str]] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


def _providers(device: str) -> list[Any]:
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _spec(arg: Any) -> TensorSpec:
    datatype = ORT_DATATYPES.get(arg.type, "FP32")
    shape = tuple(dim if isinstance(dim, int) and dim >= 0 else -1 for dim in arg.shape)
    return TensorSpec(arg.name, datatype, shape)


class OnnxRuntime(Runtime):
    _session: Any = None

    @property
    def computes_in_caller(self) -> bool:
        return self.intra_op_threads == 1 and self.options.device == "cpu"

    def load(self) -> None:
        if self.options.precision != "fp32":
            # ONNX Runtime runs the graph in the types it was exported in; converting it
            # (onnxconverter-common's float16) is the exporter's step, not the server's.
            raise ConfigError(
                f"{self.artifact}: precision {self.options.precision!r} is not supported by the "
                "onnx runtime, which runs the graph in the types it holds; export the model in "
                "the precision to serve and leave precision at fp32"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = self.inter_op_threads
        self._session = ort.InferenceSession(
            str(self.artifact), sess_options=options, providers=_providers(self.options.device)
        )
        self._output_names = [o.name for o in self._session.get_outputs()]
        self._feed_dtypes = {
            i.name: DATATYPE_TO_NUMPY[_spec(i).datatype] for i in self._session.get_inputs()
        }

    def signature(self) -> Signature:
        return Signature(
            tuple(_spec(i) for i in self._session.get_inputs()),
            tuple(_spec(o) for o in self._session.get_outputs()),
        )

    def infer(self, inputs: Arrays) -> Arrays:
        feed = {}
        for name, array in inputs.items():
            dtype = self._feed_dtypes.get(name)
            if dtype is not None and dtype.kind != "O" and array.dtype != dtype:
                array = array.astype(dtype)
            elif dtype is not None and dtype.kind == "O":
                array = np.array([v.decode() for v in array.reshape(-1)], dtype=object).reshape(
                    array.shape
                )
            feed[name] = array
        results = self._session.run(self._output_names, feed)
        return dict(zip(self._output_names, results, strict=True))

    def unload(self) -> None:
        self._session = None
