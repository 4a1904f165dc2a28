"""Plain Python models: ``model.py`` defines ``class Model`` (the contract: python_api.py).

Inputs and outputs must be declared in ``model.yaml``. BYTES inputs reach the model as
numpy object arrays of ``bytes``. An ``async def predict`` runs on an event loop private to
the instance thread that calls it, never on the server's loop. A ``predict`` that is a
generator (or async generator) streams: each ``yield`` is one partial answer (through
``encode_response`` when the model has it) and the version is decoupled. The file is code: only
models from the repository are loaded, never from elsewhere.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, Final

from inferd.errors import ConfigError
from inferd.runtimes.base import Arrays, Runtime
from inferd.runtimes.python_api import (
    STREAMING_KINDS,
    LoadContext,
    Pipeline,
    call_load,
    check_class,
    check_hooks,
)
from inferd.runtimes.python_api import kind as kind_of


class PythonRuntime(Runtime):
    _model: Any = None
    _module_name = ""
    #: User code may block (a lock, a file, the network, an event loop of its own) however
    #: cheap it measured: it always runs in its instance threads, never on the server's loop.
    inline_safe = False

    def load(self) -> None:
        outputs = self.options.outputs
        if self.options.inputs is None or outputs is None:
            raise ConfigError(
                f"{self.artifact}: a Python model must declare its inputs and outputs in model.yaml"
            )
        # One module per runtime: a reload imports the file again beside the serving one.
        module_name = f"inferd_model_{abs(hash(str(self.artifact)))}_{id(self):x}"
        spec = importlib.util.spec_from_file_location(module_name, self.artifact)
        if spec is None or spec.loader is None:
            raise ConfigError(f"{self.artifact}: cannot be imported")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        self._module_name = module_name
        self._local = threading.local()
        self._loops: list[asyncio.AbstractEventLoop] = []
        self._loops_lock = threading.Lock()
        try:
            spec.loader.exec_module(module)
            model_cls = getattr(module, "Model", None)
            check_class(model_cls, self.artifact)
            assert model_cls is not None  # check_class refuses a missing class
            model = model_cls()
            check_hooks(model, self.artifact, self._stateful())
            call_load(model, self._context())
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
        self._pipeline = Pipeline(model, outputs, self.options.by_row)
        self.decoupled = kind_of(model.predict) in STREAMING_KINDS
        self._run = self.RUNNERS.get(kind_of(model.predict), PythonRuntime._call)
        self._model = model

    def _stateful(self) -> bool:
        sequences = getattr(self.options.model_yaml, "sequence_batching", None)
        return bool(sequences is not None and sequences.state)

    def infer_states(self, inputs: Arrays, states: list[dict[str, Any]]) -> Arrays:
        """A sequence model's batch with one state dict per row (core/serving/sequences.py)."""
        x = self._pipeline.before(inputs)
        output = self._model.predict(x, states)
        if inspect.iscoroutine(output):
            output = self._thread_loop().run_until_complete(output)
        return self._pipeline.after(output, inputs)

    def _context(self) -> LoadContext:
        return LoadContext(
            folder=self.artifact.parent,
            model=self.model_name,
            version=self.version,
            device=self.options.device,
            threads=self.intra_op_threads,
            config=self.options.model_yaml,
            parameters=self.options.parameters,
        )

    def infer(self, inputs: Arrays) -> Arrays:
        x = self._pipeline.before(inputs)
        return self._pipeline.after(self._run(self, x), inputs)

    def _call(self, x: Any) -> Any:
        return self._model.predict(x)

    def _await(self, x: Any) -> Any:
        return self._thread_loop().run_until_complete(self._model.predict(x))

    #: How ``predict`` is run, by its kind (python_api.kind).
    RUNNERS: Final[dict[str, Callable[[PythonRuntime, Any], Any]]] = {
        "function": _call,
        "coroutine": _await,
    }

    def stream(self, inputs: Arrays) -> Iterator[Arrays]:
        """The partial answers of a generator ``predict``; closing this closes it."""
        partials = self._model.predict(self._pipeline.before(inputs))
        source: Any = self._drive(partials) if inspect.isasyncgen(partials) else partials
        try:
            for partial in source:
                yield self._pipeline.after(partial, inputs)
        finally:
            source.close()

    def _drive(self, partials: Any) -> Iterator[Any]:
        """An async generator, driven on this thread's private event loop."""
        loop = self._thread_loop()
        try:
            while True:
                try:
                    yield loop.run_until_complete(anext(partials))
                except StopAsyncIteration:
                    return
        finally:
            loop.run_until_complete(partials.aclose())

    def _thread_loop(self) -> asyncio.AbstractEventLoop:
        """This thread's private event loop (made on first use, closed at unload)."""
        loop: asyncio.AbstractEventLoop | None = getattr(self._local, "loop", None)
        if loop is None:
            loop = asyncio.new_event_loop()
            self._local.loop = loop
            with self._loops_lock:
                self._loops.append(loop)
        return loop

    def unload(self) -> None:
        model, self._model = self._model, None
        unload = getattr(model, "unload", None)
        try:
            if unload is not None:
                unload()
        finally:
            for loop in getattr(self, "_loops", ()):
                loop.close()
            sys.modules.pop(self._module_name, None)
