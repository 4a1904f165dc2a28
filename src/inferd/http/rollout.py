"""``/v2/models/{model}/rollout``: start (PUT), show (GET) and stop (DELETE) a guarded
rollout (core/traffic/rollout.py). All three need the admin scope (gateway/operations.py)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from inferd.core.control import ControlPlane
from inferd.http import schemas as S
from inferd.http.body import read_body
from inferd.http.codec import parse_json
from inferd.http.schemas import answers

JSON = "application/json"


def _json(doc: Any) -> Response:
    return Response(orjson.dumps(doc), media_type=JSON)


def router() -> APIRouter:
    api = APIRouter(prefix="/v2", tags=["Versions"])

    def control_of(request: Request) -> ControlPlane:
        control: ControlPlane = request.app.state.node.control
        return control

    @api.get(
        "/models/{model}/rollout",
        summary="The model's rollout: state, step, split, window and every decision (admin)",
        responses=answers(S.ROLLOUT, 400, 401, 403, 404, 429),
    )
    async def get_rollout(request: Request, model: str) -> Response:
        return _json(control_of(request).rollout(model))

    @api.put(
        "/models/{model}/rollout",
        summary="Roll a version out step by step, rolled back when it does worse (admin)",
        responses=answers(S.ROLLOUT, 400, 401, 403, 404, 409, 413, 429),
        openapi_extra={
            "requestBody": {"required": True, "content": {JSON: {"schema": S.ROLLOUT_PLAN}}}
        },
    )
    async def start_rollout(request: Request, model: str) -> Response:
        control = control_of(request)
        body = await read_body(request, control.settings.safeguards.max_request_bytes)
        return _json(control.start_rollout(model, parse_json(body)))

    @api.delete(
        "/models/{model}/rollout",
        summary="Stop the model's rollout: the stable version takes all the traffic (admin)",
        responses=answers(S.ROLLOUT, 400, 401, 403, 404, 429),
    )
    async def abort_rollout(request: Request, model: str) -> Response:
        return _json(control_of(request).abort_rollout(model))

    return api
