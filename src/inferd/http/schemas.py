"""JSON schemas of the answers of the metadata, health and repository routes, for OpenAPI.

``answers(ok, *codes)`` is a route's ``responses``: the 200 schema and the error statuses the
route really answers (each with the one error body). FastAPI's automatic 422 is removed from
the document (http/openapi.py): inferd answers a bad request 400, never 422.
"""

from __future__ import annotations

from typing import Any, Final

Schema = dict[str, Any]

_STRING: Final[Schema] = {"type": "string"}
_BOOL: Final[Schema] = {"type": "boolean"}


def _object(required: list[str], **properties: Schema) -> Schema:
    return {"type": "object", "required": required, "properties": properties}


ERROR: Final = _object(["error", "request_id"], error=_STRING, request_id=_STRING)
EMPTY: Final[Schema] = {"type": "object", "additionalProperties": False}
SERVER_METADATA: Final = _object(
    ["name", "version", "extensions"],
    name=_STRING,
    version=_STRING,
    extensions={"type": "array", "items": _STRING},
)
LIVE: Final = _object(["live"], live=_BOOL)
READY: Final = _object(["ready"], ready=_BOOL)
HEALTHZ: Final = _object(["status"], status={"type": "string", "enum": ["ok"]})
_TENSOR_METADATA: Final = _object(
    ["name", "datatype", "shape"],
    name=_STRING,
    datatype={"type": "string", "example": "FP32"},
    shape={"type": "array", "items": {"type": "integer", "minimum": -1}, "example": [-1, 4]},
)
MODEL_METADATA: Final = _object(
    ["name", "versions", "platform", "inputs", "outputs"],
    name=_STRING,
    versions={"type": "array", "items": _STRING},
    platform={"type": "string", "example": "onnxruntime_onnx"},
    inputs={"type": "array", "items": _TENSOR_METADATA},
    outputs={"type": "array", "items": _TENSOR_METADATA},
)
MODEL_READY: Final = _object(["name", "ready"], name=_STRING, ready=_BOOL)
_CONFIG_TENSOR: Final = _object(
    ["name", "data_type", "dims"],
    name=_STRING,
    data_type={"type": "string", "example": "TYPE_FP32"},
    dims={"type": "array", "items": {"type": "integer"}},
)
MODEL_CONFIG: Final = _object(
    ["name", "platform", "backend", "max_batch_size", "input", "output"],
    name=_STRING,
    platform=_STRING,
    backend=_STRING,
    max_batch_size={"type": "integer", "minimum": 0},
    input={"type": "array", "items": _CONFIG_TENSOR},
    output={"type": "array", "items": _CONFIG_TENSOR},
    instance_group={"type": "array", "items": {"type": "object"}},
    version_policy={"type": "object"},
    dynamic_batching={"type": "object"},
)
STATS: Final = _object(
    ["model_stats"],
    model_stats={"type": "array", "items": {"type": "object", "description": "Triton's"}},
)
INDEX: Final[Schema] = {
    "type": "array",
    "items": _object(
        ["name", "version", "state", "reason"],
        name=_STRING,
        version=_STRING,
        state={
            "type": "string",
            "enum": ["LOADING", "READY", "UNLOADING", "UNAVAILABLE", "FAILED"],
        },
        reason=_STRING,
    ),
}
_NUMBER: Final[Schema] = {"type": "number"}
_INTEGER: Final[Schema] = {"type": "integer"}
_SPLIT: Final[Schema] = {
    "type": ["object", "null"],
    "additionalProperties": _INTEGER,
    "example": {"1": 75, "2": 25},
}
ROLLOUT_PLAN: Final = _object(
    ["to"],
    to={"type": "string", "description": "The version to roll out", "example": "2"},
    steps={
        "type": "array",
        "items": {"type": "integer", "minimum": 1, "maximum": 100},
        "description": "The canary's share at each step (percent), increasing, ending at 100",
        "default": [5, 25, 50, 100],
    },
    step_interval_s={"type": "number", "minimum": 0.01, "maximum": 86400, "default": 60},
    max_error_rate={"type": "number", "minimum": 0, "maximum": 1, "default": 0.01},
    max_p99_ratio={"type": "number", "minimum": 1, "maximum": 1000, "default": 1.5},
    min_requests={"type": "integer", "minimum": 1, "default": 200},
)
_WINDOW_FIGURES: Final = _object(
    ["requests", "errors", "error_rate", "p99_ms"],
    requests=_INTEGER,
    errors=_INTEGER,
    error_rate=_NUMBER,
    p99_ms={"type": ["number", "null"]},
)
ROLLOUT: Final = _object(
    ["model", "state", "stable", "canary", "step", "percent", "split", "plan", "window"],
    model=_STRING,
    state={"type": "string", "enum": ["running", "succeeded", "rolled_back", "aborted"]},
    stable=_STRING,
    canary=_STRING,
    step={"type": "integer", "minimum": 1, "description": "1-based index into plan.steps"},
    percent={"type": "integer", "description": "The canary's share at this step"},
    split=_SPLIT,
    plan=ROLLOUT_PLAN,
    window=_object(
        ["seconds", "stable", "canary"],
        seconds=_NUMBER,
        stable=_WINDOW_FIGURES,
        canary=_WINDOW_FIGURES,
    ),
    decisions={
        "type": "array",
        "items": _object(
            ["time", "decision", "step", "split", "reason"],
            time={"type": "string", "format": "date-time"},
            decision={
                "type": "string",
                "enum": ["start", "advance", "hold", "rollback", "complete", "abort"],
            },
            step=_INTEGER,
            split=_SPLIT,
            reason=_STRING,
        ),
    },
)
_TENSOR_EXAMPLE: Final = _object(
    ["name", "datatype", "shape", "data", "elided"],
    name=_STRING,
    datatype=_STRING,
    shape={"type": "array", "items": {"type": "integer"}},
    data={"type": "array", "items": {}},
    elided={"type": "integer", "minimum": 0},
)
_NUMBER_OR_NULL: Final[Schema] = {"type": ["number", "null"]}
SHADOW: Final = _object(
    ["model", "shadow"],
    model=_STRING,
    shadow={
        "type": ["object", "null"],
        "description": "null: the model has no shadow",
        "properties": {
            "version": _STRING,
            "fraction": {"type": "number", "minimum": 0, "maximum": 1},
            "max_in_flight": {"type": "integer"},
            "rtol": {"type": "number"},
            "atol": {"type": "number"},
            "examples": {"type": "integer"},
            "source": {"type": "string", "enum": ["model.yaml", "api"]},
            "since": _STRING,
            "in_flight": {"type": "integer"},
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "disagreements": {"type": "object", "additionalProperties": {"type": "integer"}},
            "last_error": {"type": ["string", "null"]},
            "primary_share": {
                "type": "integer",
                "description": "% of the requests naming no version that the shadow version "
                "answers itself (they are not mirrored)",
            },
            "warning": {"type": ["string", "null"]},
            "recent": {
                "type": "array",
                "items": _object(
                    ["time", "reason", "inputs", "outputs"],
                    time=_STRING,
                    request_id={"type": ["string", "null"]},
                    reason=_STRING,
                    inputs={"type": "array", "items": _TENSOR_EXAMPLE},
                    outputs={
                        "type": "array",
                        "items": _object(
                            ["name", "reason"],
                            name=_STRING,
                            reason={"type": ["string", "null"]},
                            max_abs=_NUMBER_OR_NULL,
                            max_rel=_NUMBER_OR_NULL,
                            argmax_agreement=_NUMBER_OR_NULL,
                            detail=_STRING,
                            primary=_TENSOR_EXAMPLE,
                            shadow={"oneOf": [_TENSOR_EXAMPLE, {"type": "null"}]},
                        ),
                    },
                ),
            },
        },
    },
)
#: The body of ``PUT /v2/models/{m}/shadow`` (or null, to stop the shadow).
SHADOW_REQUEST: Final[Schema] = {
    "type": ["object", "null"],
    "required": ["version", "fraction"],
    "additionalProperties": False,
    "properties": {
        "version": {"type": "string", "example": "2"},
        "fraction": {"type": "number", "minimum": 0, "maximum": 1, "example": 0.2},
        "max_in_flight": {"type": "integer", "minimum": 1, "maximum": 1024, "default": 8},
        "rtol": {"type": "number", "minimum": 0, "default": 1e-4},
        "atol": {"type": "number", "minimum": 0, "default": 1e-5},
        "examples": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 20},
    },
}
#: With --workers N: each worker's pid and readiness (``ready`` needs all N ready).
_WORKERS: Final[Schema] = {
    "type": "array",
    "items": _object(["pid", "ready"], pid={"type": "integer"}, ready=_BOOL),
}
READINESS: Final = _object(
    ["ready", "models", "workers"], ready=_BOOL, models=INDEX, workers=_WORKERS
)

_WEIGHTS: Final[Schema] = {
    "type": ["object", "null"],
    "additionalProperties": {"type": "integer", "minimum": 0},
    "description": "Version -> integer weight, summing to 100; null: the latest version "
    "answers requests that name none.",
    "example": {"1": 90, "2": 10},
}
TRAFFIC: Final = _object(
    ["model", "traffic", "versions"],
    model=_STRING,
    traffic=_WEIGHTS,
    versions={"type": "array", "items": _STRING},
)
SET_TRAFFIC: Final = _object(["traffic"], traffic=_WEIGHTS)

#: Status -> what it means on these routes.
ERRORS: Final[dict[int, str]] = {
    400: "Bad input: an unsafe model or version name, a version not served, or a malformed body",
    401: "No admin bearer token",
    403: "Wrong admin token, or a remote client with no token configured",
    404: "Unknown model or version",
    409: "A rollout of the model is already running",
    413: "Body too large",
    429: "Rate limited (safeguards.rate_limit)",
    503: "Not ready, failed to load, or shutting down",
}


def _json(description: str, schema: Schema) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def answers(
    ok: Schema, *codes: int, not_ready: Schema | None = None
) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses``: 200 with ``ok``, each of ``codes`` with the error body;
    ``not_ready``: a 503 that carries this body instead (readiness routes)."""
    responses: dict[int | str, dict[str, Any]] = {200: _json("OK", ok)}
    for code in codes:
        responses[code] = _json(ERRORS[code], ERROR)
    if not_ready is not None:
        responses[503] = _json("Not ready", not_ready)
    return responses
