"""Protocol-neutral requests and responses: what adapters build and read."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from inferd.tensors import WireTensor
from inferd.types import Tensor

#: A request's input: decoded (in-process callers, the simple API) or as it came off the
#: wire, its elements decoded once the core checked its header against the model.
InputTensor = Tensor | WireTensor


@dataclasses.dataclass(slots=True)
class RequestedOutput:
    name: str
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(slots=True)
class InferRequest:
    model: str
    inputs: list[InputTensor]
    version: str | None = None
    id: str | None = None
    outputs: list[RequestedOutput] | None = None
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Absolute ``time.monotonic()`` deadline; None takes the model's or server's default.
    deadline: float | None = None
    protocol: str = "rest"
    #: The transport's request id (X-Request-Id), if any; see :meth:`effective_id`.
    request_id: str | None = None
    #: Keeps a caller on one version of a traffic split (see inferd.core.traffic.router).
    routing_key: str | None = None
    #: An input or output names a system shared memory region: the adapter resolves the
    #: request, and writes the answer's outputs, through core/serving/shm.py.
    shared_memory: bool = False
    #: ``time.monotonic()`` when the transport first saw the request (None: not given); a
    #: latency target times answers from it (inferd.core.serving.latency).
    arrived: float | None = None
    #: The transport read no other request that has not reached its queue yet: on an idle,
    #: cheap version it runs at once (inferd.core.serving.batcher's contract).
    alone: bool = False

    def effective_id(self) -> str:
        """The id the log and an internal error name: the transport's, else the V2 ``id``
        (when short and printable), else a new one."""
        for given in (self.request_id, self.id):
            if given and len(given) <= 128 and given.isprintable():
                return given
        return uuid.uuid4().hex


@dataclasses.dataclass(slots=True)
class InferResponse:
    model: str
    version: str
    outputs: list[Tensor]
    id: str | None = None
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Per requested output, the transport parameters the client sent with it.
    output_parameters: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    #: False for the partial responses of a streaming model; its stream ends with a
    #: response that has no outputs and ``final`` set.
    final: bool = True
    #: ``"hit"`` or ``"miss"`` for a model with the prediction cache on, else None.
    cache: str | None = None


@dataclasses.dataclass(slots=True)
class PredictResult:
    """The simple API's answer: the first output, one row per item when batched."""

    predictions: list[Any]
    model_version: str
    latency_ms: float
    cache: str | None = None
