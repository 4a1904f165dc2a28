"""TorchScript models through ``torch.jit.load``, run under ``torch.inference_mode``.

Inputs are passed positionally in declared order. A model may return a tensor, a tuple or
list of tensors (matched to the declared outputs in order) or a dict of tensors by name.
"""

from __future__ import annotations

import warnings
from typing import Any, Final

import numpy as np
import torch

from inferd.errors import ConfigError, InternalError
from inferd.runtimes.base import Arrays, Runtime

PRECISIONS: Final[dict[str, torch.dtype]] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}


class TorchScriptRuntime(Runtime):
    _module: Any = None
    _forward: Any = None

    @property
    def computes_in_caller(self) -> bool:
        return self.intra_op_threads == 1 and self.options.device == "cpu"

    def load(self) -> None:
        declared_inputs, declared_outputs = self.options.inputs, self.options.outputs
        if declared_inputs is None or declared_outputs is None:
            raise ConfigError(
                f"{self.artifact}: a TorchScript model must declare its inputs and outputs "
                "in model.yaml (name, datatype, shape)"
            )
        self.prepare_thread()  # the loading thread runs the warm-up
        self._device = torch.device(self.options.device)
        self._dtype = PRECISIONS[self.options.precision]
        self._on_cpu = self._device.type == "cpu"
        with warnings.catch_warnings():
            # TorchScript is the format served here; its deprecation notice is noise.
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(self.artifact), map_location=self._device)
        module.eval()
        if self._dtype is not torch.float32:
            module = module.to(self._dtype)
        forward = getattr(module, "forward", None)
        if forward is None:
            raise ConfigError(f"{self.artifact}: the TorchScript module has no forward method")
        self._module = module
        # A module saved without hooks is run by its compiled method: calling the module
        # goes through nn.Module's Python call wrapper, which measured about 20 us a call
        # with cold caches (docs/performance.md, round 7). Hooks compiled into the module
        # are run by that wrapper, so a module with any is called as a module.
        hooked = module._forward_hooks or module._forward_pre_hooks
        self._forward = module if hooked else forward
        self._input_names = [t.name for t in declared_inputs]
        self._output_names = [t.name for t in declared_outputs]
        self._output_dtypes = {
            t.name: np.dtype(np.float32) if t.datatype == "BF16" else None for t in declared_outputs
        }

    def prepare_thread(self) -> None:
        # OpenMP's thread count is per thread: a new thread starts with one per core, and
        # its idle OpenMP workers spin, taking a core from the event loop.
        if self.intra_op_threads > 0:
            torch.set_num_threads(self.intra_op_threads)

    # Every torch call made from Python lets go of the GIL and must win it back, and the
    # event loop may hold it for a whole switch interval: on the CPU, with inputs of the
    # model's precision, the only torch calls per batch are from_numpy, the model and numpy().
    # Inference mode is entered by the guard ``torch.inference_mode`` itself enters: its
    # Python wrapper (three calls and an object) measured 15-25 us a call with the
    # interpreter's caches cold, as they are between batches (docs/performance.md, round 6).

    def _to_tensor(self, array: np.ndarray[Any, Any]) -> torch.Tensor:
        if array.dtype == object:
            raise ConfigError("TorchScript models take numeric tensors, not BYTES")
        if not array.flags.writeable:
            array = array.copy()
        tensor = torch.from_numpy(array)
        if tensor.is_floating_point() and tensor.dtype != self._dtype:
            tensor = tensor.to(self._dtype)
        if self._on_cpu:
            return tensor
        return tensor.to(self._device, non_blocking=True)

    def infer(self, inputs: Arrays) -> Arrays:
        args = [self._to_tensor(inputs[name]) for name in self._input_names]
        with torch._C._InferenceMode(True):
            result = self._forward(*args)
        return self._outputs(result)

    def _outputs(self, result: Any) -> Arrays:
        if isinstance(result, torch.Tensor):
            result = (result,)
        if isinstance(result, dict):
            items = [result[name] for name in self._output_names]
        elif isinstance(result, list | tuple):
            items = list(result)
        else:
            raise InternalError(f"model returned {type(result).__name__}, expected tensors")
        if len(items) != len(self._output_names):
            raise InternalError(
                f"model returned {len(items)} outputs, model.yaml declares "
                f"{len(self._output_names)}"
            )
        outputs: Arrays = {}
        for name, tensor in zip(self._output_names, items, strict=True):
            if tensor.dtype in (torch.float16, torch.bfloat16):
                tensor = tensor.float()
            if not tensor.is_cpu:
                tensor = tensor.cpu()
            # Made under inference_mode: nothing to detach from.
            outputs[name] = tensor.numpy()
        return outputs

    def unload(self) -> None:
        self._module = None
        self._forward = None
        if self._device.type == "cuda":
            torch.cuda.empty_cache()
