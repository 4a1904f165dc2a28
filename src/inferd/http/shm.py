"""Triton's system shared memory extension over REST: a caller registers, lists and
unregisters its own regions (core/serving/shm.py); inference reads and writes them."""

from __future__ import annotations

from typing import Any, Final

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from inferd.core.service import InferenceService
from inferd.core.serving.shm import SharedMemory
from inferd.errors import InvalidArgument
from inferd.http import schemas as S
from inferd.http.body import read_body
from inferd.http.codec import parse_json
from inferd.http.front import SCOPE_KEY
from inferd.http.schemas import answers

JSON: Final = "application/json"
REGISTER_FIELDS: Final = frozenset({"key", "offset", "byte_size"})
_REGION: Final = {
    "type": "object",
    "required": ["name", "key", "offset", "byte_size"],
    "properties": {
        "name": {"type": "string"},
        "key": {"type": "string"},
        "offset": {"type": "integer"},
        "byte_size": {"type": "integer"},
    },
}
STATUS: Final = {"type": "array", "items": _REGION}
REGISTER: Final = {
    "type": "object",
    "required": ["key", "byte_size"],
    "additionalProperties": False,
    "properties": {
        "key": {"type": "string", "example": "/input_simple"},
        "offset": {"type": "integer", "minimum": 0},
        "byte_size": {"type": "integer", "minimum": 1},
    },
}
CODES: Final = (400, 401, 403, 404, 429)


def _json(doc: Any) -> Response:
    return Response(orjson.dumps(doc), media_type=JSON)


def _memory(request: Request) -> SharedMemory:
    service: InferenceService = request.app.state.service
    return service.shared_memory


def _count(doc: dict[str, Any], key: str, default: int | None) -> int:
    value = doc.get(key, default)
    if type(value) is not int or value < 0:
        raise InvalidArgument(f"'{key}' must be a non-negative integer")
    return value


def _caller(request: Request) -> tuple[str | None, str | None]:
    """The caller the front admitted (its key name and address)."""
    principal = request.scope[SCOPE_KEY].principal
    return principal.name, principal.address


def router() -> APIRouter:
    api = APIRouter(prefix="/v2/systemsharedmemory", tags=["System shared memory"])

    @api.get("/status", summary="The caller's regions", responses=answers(STATUS, *CODES))
    async def status_all(request: Request) -> Response:
        return _json(_memory(request).status(_caller(request), None))

    @api.get(
        "/region/{name}/status",
        summary="One of the caller's regions",
        responses=answers(STATUS, *CODES),
    )
    async def status(request: Request, name: str) -> Response:
        return _json(_memory(request).status(_caller(request), name))

    @api.post(
        "/region/{name}/register",
        summary="Register a POSIX shared memory object as a region of the caller",
        responses=answers(S.EMPTY, *CODES, 413),
        openapi_extra={"requestBody": {"required": True, "content": {JSON: {"schema": REGISTER}}}},
    )
    async def register(request: Request, name: str) -> Response:
        service: InferenceService = request.app.state.service
        body = await read_body(request, service.settings.safeguards.max_request_bytes)
        doc = parse_json(body)
        if not isinstance(doc, dict) or set(doc) - REGISTER_FIELDS or "key" not in doc:
            raise InvalidArgument(
                'the register request is {"key": "/<shm name>", "offset": <bytes>, '
                '"byte_size": <bytes>}'
            )
        if not isinstance(doc["key"], str):
            raise InvalidArgument("'key' must be a string")
        service.shared_memory.register(
            _caller(request),
            name,
            doc["key"],
            _count(doc, "offset", 0),
            _count(doc, "byte_size", None),
        )
        return _json({})

    @api.post(
        "/unregister",
        summary="Unregister every region of the caller",
        responses=answers(S.EMPTY, *CODES),
    )
    async def unregister_all(request: Request) -> Response:
        _memory(request).unregister(_caller(request), None)
        return _json({})

    @api.post(
        "/region/{name}/unregister",
        summary="Unregister one region",
        responses=answers(S.EMPTY, *CODES),
    )
    async def unregister(request: Request, name: str) -> Response:
        _memory(request).unregister(_caller(request), name)
        return _json({})

    return api
