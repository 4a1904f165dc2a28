"""Protocol-neutral requests and responses: what adapters build and read."""

from __future__ import annotations

import dataclasses
from typing import Any

from inferd.types import Tensor


@dataclasses.dataclass(slots=True)
class RequestedOutput:
    name: str
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(slots=True)
class InferRequest:
    model: str
    inputs: list[Tensor]
    version: str | None = None
    id: str | None = None
    outputs: list[RequestedOutput] | None = None
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Absolute ``time.monotonic()`` deadline; None takes the model's or server's default.
    deadline: float | None = None
    protocol: str = "rest"
    #: The transport's request id (X-Request-Id); else the V2 ``id``; else one is made.
    request_id: str | None = None


@dataclasses.dataclass(slots=True)
class InferResponse:
    model: str
    version: str
    outputs: list[Tensor]
    id: str | None = None
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Per requested output, the transport parameters the client sent with it.
    output_parameters: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(slots=True)
class PredictResult:
    """The simple API's answer: the first output, one row per item when batched."""

    predictions: list[Any]
    model_version: str
    latency_ms: float
