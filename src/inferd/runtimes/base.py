"""The runtime contract and the table of runtime implementations.

A runtime is synchronous and is called from a worker thread, never on the event loop.
``infer`` receives one batch as named numpy arrays (every array's first dimension is the
batch dimension when the model batches) and must return arrays for every declared output
with the same batch dimension. Heavy frameworks are imported inside the implementation
modules only, when a model that needs them loads.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np

from inferd.errors import ConfigError
from inferd.types import TensorSpec

Arrays = dict[str, np.ndarray[Any, Any]]

RUNTIMES: Final[dict[str, str]] = {
    "torchscript": "inferd.runtimes.torchscript:TorchScriptRuntime",
    "onnx": "inferd.runtimes.onnx:OnnxRuntime",
    "tensorflow": "inferd.runtimes.tensorflow:TensorFlowRuntime",
    "python": "inferd.runtimes.python:PythonRuntime",
}

#: Platform names reported in metadata and Triton's model configuration.
PLATFORMS: Final[dict[str, str]] = {
    "torchscript": "pytorch_libtorch",
    "onnx": "onnxruntime_onnx",
    "tensorflow": "tensorflow_savedmodel",
    "python": "python",
    "pipeline": "ensemble",  # a model composed of steps (inferd.core.serving.pipeline)
}

#: The package extra that installs each runtime's framework.
EXTRAS: Final[dict[str, str]] = {
    "torchscript": "torch",
    "onnx": "onnx",
    "tensorflow": "tensorflow",
}


@dataclasses.dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """What a runtime needs of its version's settings (resolved once, at load, by
    :func:`inferd.core.store.versions.runtime_options`)."""

    artifact: Path
    model: str = ""
    version: str = ""
    #: ``cpu``, ``cuda`` or ``cuda:N``.
    device: str = "cpu"
    #: ``fp32``, ``fp16`` or ``bf16``.
    precision: str = "fp32"
    #: Threads per operator and for independent operators (0: the framework's default).
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    #: The SavedModel signature served (tensorflow); None: ``serving_default``.
    signature: str | None = None
    #: Inputs and outputs declared in model.yaml (None: not declared).
    inputs: tuple[TensorSpec, ...] | None = None
    outputs: tuple[TensorSpec, ...] | None = None
    #: The first dimension of every tensor is the batch dimension (one request per row).
    by_row: bool = False
    #: model.yaml's ``parameters``: the model's own settings.
    parameters: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: The whole model.yaml, as Python models' ``load(context)`` receives it.
    model_yaml: Any = None


@dataclasses.dataclass(frozen=True, slots=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


class Runtime(abc.ABC):
    """One loaded model version.

    A streaming (decoupled) runtime sets ``decoupled`` at load and answers through
    ``stream``, which yields any number of partial outputs per request; its ``infer`` is
    never called.
    """

    #: True when the loaded model streams partial outputs (``stream``) instead of answering once.
    decoupled: bool = False
    #: False when ``infer`` must not be called on the server's event loop thread (it runs
    #: an event loop of its own); such a model never runs inline (core/serving/batcher.py).
    inline_safe: bool = True

    @property
    def computes_in_caller(self) -> bool:
        """True when a call computes on the thread that makes it (one intra-op thread and
        no threads of the framework's own), so that thread's CPU time is the call's cost."""
        return False

    def __init__(self, options: RuntimeOptions) -> None:
        self.options = options
        self.artifact = options.artifact
        self.model_name = options.model
        self.version = options.version
        self.intra_op_threads = options.intra_op_threads
        self.inter_op_threads = options.inter_op_threads

    @abc.abstractmethod
    def load(self) -> None:
        """Read the artifact and make the model ready to run."""

    @abc.abstractmethod
    def infer(self, inputs: Arrays) -> Arrays:
        """Run one batch. Called from a worker thread."""

    def stream(self, inputs: Arrays) -> Iterator[Arrays]:
        """The partial outputs of one request (decoupled runtimes). Called from a worker
        thread, which advances the iterator and closes it when the client stops."""
        raise NotImplementedError(f"{type(self).__name__} does not stream")

    def prepare_thread(self) -> None:  # noqa: B027 - most runtimes need nothing
        """Called once in each instance thread before its first batch: settings that a
        framework keeps per thread (OpenMP's thread count) are applied here."""

    def unload(self) -> None:  # noqa: B027 - nothing to release by default
        """Release what ``load`` took."""

    def signature(self) -> Signature | None:
        """Inputs and outputs read from the artifact, or None when it does not say."""
        return None


def runtime_class(name: str) -> type[Runtime]:
    try:
        target = RUNTIMES[name]
    except KeyError:
        raise ConfigError(f"unknown runtime {name!r}; expected one of {sorted(RUNTIMES)}") from None
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"runtime {name!r} needs a package that is not installed ({exc.name}); "
            f"install inferd[{EXTRAS.get(name, name)}]"
        ) from exc
    cls: type[Runtime] = getattr(module, attr)
    return cls
