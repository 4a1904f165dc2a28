"""The Python model contract: what ``class Model`` in ``model.py`` may define, checked at load.

Only ``predict`` is required. Every hook is looked up once, when the version loads, and a
wrong name, signature or kind is a ConfigError that says what to write instead.

- ``load(self, context)`` (or ``load(self)``): once, before the first request.
- ``decode_request(self, request) -> item``: once per request row; ``request`` maps each
  input name to that row's value (numpy; a BYTES element is ``bytes``).
- ``batch(self, items) -> x``: combines the decoded items (default: the list itself).
- ``predict(self, x)``: the tensors by name when there is no ``decode_request``, otherwise
  the batch of decoded items. May be ``async def``. A generator (or async generator)
  ``predict`` streams: each ``yield`` is one partial answer, encoded as a whole answer is.
- ``unbatch(self, output) -> list``: splits ``predict``'s output into one per row
  (default: ``list(output)``).
- ``encode_response(self, output) -> dict``: one row's outputs by name; BYTES outputs take
  ``bytes``, ``str`` or anything JSON can hold (encoded as JSON).
- ``unload(self)``: when the version unloads.

Without ``encode_response`` ``predict`` returns the output tensors by name.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np
import orjson

from inferd.errors import ConfigError, InternalError
from inferd.types import DATATYPE_TO_NUMPY, TensorSpec

Arrays = dict[str, np.ndarray[Any, Any]]


@dataclasses.dataclass(frozen=True, slots=True)
class LoadContext:
    """What ``Model.load(self, context)`` receives."""

    #: The version folder (the one that holds ``model.py``).
    folder: Path
    model: str
    version: str
    #: ``cpu``, ``cuda`` or ``cuda:N``, from model.yaml.
    device: str
    #: Threads per operator the model should use (``intra_op_threads``; 0 = its own default).
    threads: int
    #: The whole model.yaml (``config.max_batch_size``, ...).
    config: Any
    #: model.yaml's ``parameters``: the model's own settings.
    parameters: Mapping[str, Any]


#: Hooks that take one argument besides ``self``, and the hook each one needs.
ONE_ARGUMENT_HOOKS: Final[dict[str, str | None]] = {
    "decode_request": None,
    "batch": "decode_request",
    "unbatch": "encode_response",
    "encode_response": None,
}

#: What other servers call a hook -> what inferd calls it.
OTHER_NAMES: Final[dict[str, str]] = {
    "setup": "load(self, context)",
    "initialize": "load(self, context)",
    "execute": "predict(self, inputs)",
    "finalize": "unload(self)",
    "teardown": "unload(self)",
}

#: The kinds of ``predict`` that stream partial answers (the version is decoupled).
STREAMING_KINDS: Final = frozenset({"generator", "async generator"})


def kind(fn: Callable[..., Any]) -> str:
    """``function``, ``coroutine``, ``generator`` or ``async generator``."""
    if inspect.isasyncgenfunction(fn):
        return "async generator"
    if inspect.isgeneratorfunction(fn):
        return "generator"
    if inspect.iscoroutinefunction(fn):
        return "coroutine"
    return "function"


def _positional(fn: Callable[..., Any]) -> tuple[int, float]:
    """(required, most) positional arguments of a bound method; (0, inf) when Python
    cannot tell (some built-in callables)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 0, float("inf")
    required, most = 0, 0.0
    for param in parameters:
        if param.kind is param.VAR_POSITIONAL:
            most = float("inf")
        elif param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            most += 1
            required += param.default is param.empty
        elif param.kind is param.KEYWORD_ONLY and param.default is param.empty:
            required += 100  # cannot be called positionally at all
    return required, most


def _takes(fn: Callable[..., Any], count: int) -> bool:
    required, most = _positional(fn)
    return required <= count <= most


def check_class(model_cls: Any, where: Path) -> None:
    """Refuse a Model class that inferd could not call, with what to write instead."""
    if not inspect.isclass(model_cls):
        raise ConfigError(f"{where}: define class Model with a predict(self, inputs) method")
    for other, ours in OTHER_NAMES.items():
        name = ours.partition("(")[0]
        if callable(getattr(model_cls, other, None)) and not hasattr(model_cls, name):
            raise ConfigError(f"{where}: Model.{other}() is not called by inferd; name it {ours}")
    predict = getattr(model_cls, "predict", None)
    if not callable(predict):
        raise ConfigError(f"{where}: define class Model with a predict(self, inputs) method")
    if _positional(model_cls)[0]:
        raise ConfigError(f"{where}: Model() must take no arguments; read settings in load()")


def check_hooks(model: Any, where: Path, states: bool = False) -> None:
    """Check the instance's hooks: argument counts, kinds and pairs."""
    if states:
        if not _takes(model.predict, 2):
            raise ConfigError(
                f"{where}: with sequence_batching.state, Model.predict takes the inputs and "
                "one state dict per row: predict(self, inputs, states)"
            )
    elif not _takes(model.predict, 1):
        raise ConfigError(f"{where}: Model.predict must take one argument: predict(self, inputs)")
    for name, needs in ONE_ARGUMENT_HOOKS.items():
        hook = getattr(model, name, None)
        if hook is None:
            continue
        if not callable(hook) or kind(hook) != "function":
            raise ConfigError(
                f"{where}: Model.{name} must be a plain method (def); only predict may be async"
            )
        if not _takes(hook, 1):
            raise ConfigError(f"{where}: Model.{name} must take one argument: {name}(self, x)")
        if needs is not None and getattr(model, needs, None) is None:
            raise ConfigError(f"{where}: Model.{name} is used only with {needs}; define {needs}")
    for name in ("load", "unload"):
        hook = getattr(model, name, None)
        if hook is not None and (not callable(hook) or kind(hook) != "function"):
            raise ConfigError(f"{where}: Model.{name} must be a plain method (def)")
    load = getattr(model, "load", None)
    if load is not None and not (_takes(load, 0) or _takes(load, 1)):
        raise ConfigError(
            f"{where}: Model.load must take (self) or (self, context); "
            f"it takes {inspect.signature(load)}"
        )
    unload = getattr(model, "unload", None)
    if unload is not None and not _takes(unload, 0):
        raise ConfigError(f"{where}: Model.unload must take no arguments besides self")


def call_load(model: Any, context: LoadContext) -> None:
    load = getattr(model, "load", None)
    if load is None:
        return
    if _takes(load, 1):
        load(context)
    else:
        load()


@dataclasses.dataclass(frozen=True, slots=True)
class Pipeline:
    """The hooks around ``predict`` for one model: request rows in, output tensors out."""

    model: Any
    outputs: tuple[TensorSpec, ...]
    #: True when the first dimension of every tensor is the batch (one request per row).
    by_row: bool

    def before(self, inputs: Arrays) -> Any:
        """What ``predict`` receives for a batch of inputs."""
        decode = getattr(self.model, "decode_request", None)
        if decode is None:
            return inputs
        if self.by_row:
            rows = next(iter(inputs.values())).shape[0] if inputs else 1
            items = [decode({n: a[i] for n, a in inputs.items()}) for i in range(rows)]
        else:
            items = [decode(inputs)]
        batch = getattr(self.model, "batch", None)
        return items if batch is None else batch(items)

    def after(self, output: Any, inputs: Arrays) -> Arrays:
        """``predict``'s output as the declared output tensors."""
        encode = getattr(self.model, "encode_response", None)
        if encode is None:
            if not isinstance(output, dict):
                raise InternalError(
                    f"Model.predict returned {type(output).__name__}; expected a dict of arrays "
                    "by output name (or define encode_response)"
                )
            return {name: np.asarray(value) for name, value in output.items()}
        rows = next(iter(inputs.values())).shape[0] if self.by_row and inputs else 1
        items = self._unbatch(output, rows)
        encoded = [encode(item) for item in items]
        return {spec.name: self._assemble(spec, encoded) for spec in self.outputs}

    def _unbatch(self, output: Any, rows: int) -> list[Any]:
        unbatch = getattr(self.model, "unbatch", None)
        source = "Model.unbatch" if unbatch is not None else "Model.predict"
        items = unbatch(output) if unbatch is not None else output
        if not isinstance(items, list | tuple | np.ndarray):
            raise InternalError(
                f"{source} returned {type(items).__name__}; expected a list with one output "
                f"per request row ({rows})"
            )
        if len(items) != rows:
            raise InternalError(f"{source} returned {len(items)} outputs for {rows} rows")
        return list(items)

    def _assemble(self, spec: TensorSpec, encoded: list[Any]) -> np.ndarray[Any, Any]:
        values = []
        for answer in encoded:
            if not isinstance(answer, dict) or spec.name not in answer:
                got = sorted(answer) if isinstance(answer, dict) else type(answer).__name__
                raise InternalError(
                    f"Model.encode_response returned {got}; expected a dict with the outputs "
                    f"{[o.name for o in self.outputs]}"
                )
            values.append(answer[spec.name])
        rank = len(spec.shape) - 1 if self.by_row else len(spec.shape)
        if spec.datatype == "BYTES":
            arrays = [_bytes_array(spec.name, value, rank) for value in values]
        else:
            arrays = [np.asarray(value, dtype=DATATYPE_TO_NUMPY[spec.datatype]) for value in values]
        return np.stack(arrays) if self.by_row else arrays[0]


def _bytes_element(name: str, value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    try:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError as exc:
        raise InternalError(f"output '{name}': {type(value).__name__} is not JSON: {exc}") from exc


def _bytes_array(name: str, value: Any, rank: int) -> np.ndarray[Any, Any]:
    """One row of a BYTES output: an object array of ``rank`` dimensions holding bytes."""
    if rank == 0:
        out = np.empty((), dtype=object)
        out[()] = _bytes_element(name, value)
        return out
    if not isinstance(value, list | tuple | np.ndarray):
        raise InternalError(
            f"output '{name}': expected a list per row ({rank} dimensions), got "
            f"{type(value).__name__}"
        )
    if rank == 1:  # element by element, so a list inside stays one (JSON) element
        source = np.empty(len(value), dtype=object)
        for i, item in enumerate(value):
            source[i] = item
    else:
        source = np.array(value, dtype=object)
    if source.ndim != rank:
        raise InternalError(f"output '{name}': expected {rank} dimensions per row")
    out = np.empty(source.shape, dtype=object)
    for index, item in np.ndenumerate(source):
        out[index] = _bytes_element(name, item)
    return out
