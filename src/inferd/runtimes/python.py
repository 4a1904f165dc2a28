"""Plain Python models: ``model.py`` defines ``class Model`` with ``predict(inputs) -> outputs``.

``inputs`` and the returned mapping are ``dict[str, numpy.ndarray]``; an optional ``load()``
runs once before the first request. Inputs and outputs must be declared in ``model.yaml``.
The file is code: only models from the repository are loaded, never from elsewhere.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from inferd.errors import ConfigError, InternalError
from inferd.runtimes.base import Arrays, Runtime


class PythonRuntime(Runtime):
    _model: Any = None

    def load(self) -> None:
        if self.config.inputs is None or self.config.outputs is None:
            raise ConfigError(
                f"{self.artifact}: a Python model must declare its inputs and outputs in model.yaml"
            )
        module_name = f"inferd_model_{abs(hash(str(self.artifact)))}"
        spec = importlib.util.spec_from_file_location(module_name, self.artifact)
        if spec is None or spec.loader is None:
            raise ConfigError(f"{self.artifact}: cannot be imported")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        model_cls = getattr(module, "Model", None)
        if model_cls is None or not callable(getattr(model_cls, "predict", None)):
            raise ConfigError(f"{self.artifact}: define class Model with a predict(inputs) method")
        model = model_cls()
        if callable(getattr(model, "load", None)):
            model.load()
        self._model = model
        self._module_name = module_name

    def infer(self, inputs: Arrays) -> Arrays:
        result = self._model.predict(inputs)
        if not isinstance(result, dict):
            raise InternalError(f"Model.predict returned {type(result).__name__}, expected dict")
        return result

    def unload(self) -> None:
        self._model = None
        sys.modules.pop(self._module_name, None)
