"""OpenAPI descriptions of the fast inference routes (http/routes.py), which FastAPI does not
serve."""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from inferd.core.store.repository import SAFE_NAME
from inferd.errors import InferdError
from inferd.http.routes import Route
from inferd.types import DATATYPE_TO_NUMPY

#: Path parameters that name a model or version: safe names (core/store/repository.py).
NAME_PARAMETERS: Final = ("model", "version")

_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": sorted(DATATYPE_TO_NUMPY), "example": "FP32"},
        "parameters": {"type": "object"},
        "data": {"type": "array", "items": {}},
    },
}
_INFER_REQUEST = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "inputs": {"type": "array", "items": _TENSOR},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
            },
        },
    },
}
_PREDICT_REQUEST = {
    "type": "object",
    "properties": {
        "inputs": {
            "description": "One row: the model's input shape without the batch dimension, as "
            "nested lists (strings for BYTES)",
            "example": [1, 2, 3, 4],
        },
        "batch": {"type": "array", "description": "A list of rows", "items": {}},
        "model_version": {"type": "string"},
    },
}
_PREDICT_RESPONSE = {
    "type": "object",
    "properties": {
        "predictions": {
            "description": "The model's first output for the row (nested lists; strings for "
            "BYTES), or a list of them for 'batch'"
        },
        "model_version": {"type": "string"},
        "latency_ms": {"type": "number"},
    },
}
_ERROR = {
    "type": "object",
    "required": ["error", "request_id"],
    "properties": {"error": {"type": "string"}, "request_id": {"type": "string"}},
}
_GENERATE_REQUEST = {
    "type": "object",
    "description": "Input names as keys, each with a value; optional 'parameters'.",
    "additionalProperties": {},
    "properties": {"parameters": {"type": "object"}},
}
_GENERATE_RESPONSE = {
    "type": "object",
    "description": "model_name, model_version and each output by name. generate_stream "
    "sends one such object per Server-Sent Event (text/event-stream).",
    "additionalProperties": {},
    "properties": {"model_name": {"type": "string"}, "model_version": {"type": "string"}},
}
_RATE_LIMITED = {
    "description": "Queue full or rate limited (safeguards.rate_limit)",
    "content": {"application/json": {"schema": _ERROR}},
    "headers": {
        name: {"description": text, "schema": {"type": "integer"}}
        for name, text in (
            ("Retry-After", "Seconds to wait before trying again"),
            ("RateLimit-Limit", "Requests per window (rate limited answers only)"),
            ("RateLimit-Remaining", "Requests left in the window (rate limited answers only)"),
            ("RateLimit-Reset", "Seconds until the window resets (rate limited answers only)"),
        )
    },
}


def _operation(
    summary: str, request: dict[str, Any], response: dict[str, Any], params: list[str]
) -> dict[str, Any]:
    errors = {
        str(code): {"description": text, "content": {"application/json": {"schema": _ERROR}}}
        for code, text in [
            (400, "Bad input"),
            (401, "Missing or unknown API key (server.require_api_key)"),
            (403, "The API key lacks the infer scope"),
            (404, "Unknown model or version"),
            (413, "Body too large"),
            (503, "Not ready or shutting down"),
            (504, "Deadline exceeded"),
        ]
    }
    errors["429"] = _RATE_LIMITED
    return {
        "post": {
            "summary": summary,
            "parameters": [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in params
            ],
            "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": response}}},
                **errors,
            },
        }
    }


def _drop_validation_errors(schema: dict[str, Any]) -> None:
    """FastAPI documents a 422 for every route with parameters; inferd answers 400."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    for name in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(name, None)
    if not schema.get("components", {}).get("schemas", True):
        schema["components"].pop("schemas")
    if schema.get("components") == {}:
        schema.pop("components")


def _describe_names(schema: dict[str, Any], example: str | None) -> None:
    """Model and version path parameters are safe names; the model's example is the
    default one, so generated requests reach a model."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for parameter in operation.get("parameters", ()):
                if parameter.get("in") == "path" and parameter["name"] in NAME_PARAMETERS:
                    parameter["schema"] = {
                        "type": "string",
                        "pattern": SAFE_NAME.pattern,
                        "maxLength": 128,
                    }
                    if parameter["name"] == "model" and example is not None:
                        parameter["schema"]["example"] = example


def _default_model(app: FastAPI) -> str | None:
    try:
        name: str = app.state.service.default_model()
    except InferdError:  # several models and none configured: no example
        return None
    return name


#: A fast route's kind of body -> its request and answer schemas.
_BODIES: Final[dict[str, tuple[dict[str, Any], dict[str, Any]]]] = {
    "infer": (_INFER_REQUEST, {"type": "object"}),
    "generate": (_GENERATE_REQUEST, _GENERATE_RESPONSE),
    "predict": (_PREDICT_REQUEST, _PREDICT_RESPONSE),
}


def document_fast_routes(app: FastAPI, routes: list[Route]) -> None:
    """The OpenAPI document: FastAPI's routes, and the route table's fast routes, which
    FastAPI does not serve, each from its entry's ``doc``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        paths = schema.setdefault("paths", {})
        _drop_validation_errors(schema)
        for route in routes:
            assert route.doc is not None, f"fast route {route.path} has no OpenAPI entry"
            summary, body = route.doc
            request, response = _BODIES[body]
            params = [p for p in NAME_PARAMETERS if "{" + p + "}" in route.path]
            paths[route.path] = _operation(summary, request, response, params)
        _describe_names(schema, _default_model(app))
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
