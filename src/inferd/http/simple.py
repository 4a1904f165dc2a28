"""The simple API (``/predict``) and the operational endpoints."""

from __future__ import annotations

import asyncio
from typing import Any, Final

import orjson
from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from inferd.core.node import Node
from inferd.core.service import InferenceService
from inferd.errors import InvalidArgument, clip
from inferd.gateway import requestid, routingkey
from inferd.http import schemas as S
from inferd.http.codec import parse_json
from inferd.http.headers import deadline_from
from inferd.http.raw import Answer, Call, answer_headers
from inferd.http.schemas import answers

JSON = "application/json"
PREDICT_FIELDS: Final = frozenset({"inputs", "batch", "model_version"})


def is_v2_request(doc: Any) -> bool:
    """An Open Inference Protocol body: ``inputs`` is a list of tensor objects (with a
    ``name`` or a ``datatype``)."""
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    if not isinstance(inputs, list) or not inputs or not isinstance(inputs[0], dict):
        return False
    return "name" in inputs[0] or "datatype" in inputs[0]


def decode_predict(
    doc: Any, allowed: frozenset[str] = PREDICT_FIELDS, v2_route: str = "/v2/models/{model}/infer"
) -> tuple[Any, bool, str | None]:
    """``{"inputs": row}`` or ``{"batch": [row, ...]}``, with optional model_version.

    ``allowed`` is every field the caller accepts; those beyond these three it reads itself.
    A V2 body is refused with a pointer to ``v2_route``.
    """
    if not isinstance(doc, dict):
        raise InvalidArgument('the body must be a JSON object: {"inputs": [numbers]}')
    if is_v2_request(doc):
        raise InvalidArgument(
            "this is an Open Inference Protocol (V2) request: post it to "
            f'{v2_route}; /predict takes {{"inputs": row}} or {{"batch": [rows]}}'
        )
    unknown = doc.keys() - allowed
    if unknown:
        raise InvalidArgument(
            f"unknown field(s) {clip(sorted(unknown))}; expected {sorted(allowed)}"
        )
    version = doc.get("model_version")
    if version is not None and not isinstance(version, str):
        raise InvalidArgument("'model_version' must be a string")
    if ("inputs" in doc) == ("batch" in doc):
        raise InvalidArgument("give exactly one of 'inputs' (a list of numbers) or 'batch' (rows)")
    batched = "batch" in doc
    return doc["batch" if batched else "inputs"], batched, version


def _v2_route(service: InferenceService, call: Call) -> str:
    """The V2 route of the model a /predict call is for (the default model's, when set)."""
    model = call.model
    if model is None:
        try:
            model = service.default_model()
        except InvalidArgument:
            model = "{model}"
    return f"/v2/models/{model}/infer"


async def predict(service: InferenceService, call: Call) -> Answer:
    """POST /predict and /models/{model}/predict (a raw route, see http/raw.py)."""
    parser, body = call.json, call.body
    doc = await parser.parse(body) if parser.offloads(body) else parse_json(body)
    route = _v2_route(service, call) if is_v2_request(doc) else ""
    data, batched, version = decode_predict(doc, v2_route=route)
    result = await service.predict(
        call.model,
        version,
        data,
        batched=batched,
        protocol="rest",
        deadline=deadline_from(call.headers),
        request_id=requestid.current.get(),
        routing_key=routingkey.current.get(),
        alone=call.alone,
    )
    return Answer(
        orjson.dumps(
            {
                "predictions": result.predictions,
                "model_version": result.model_version,
                "latency_ms": result.latency_ms,
            }
        ),
        headers=answer_headers(result.model_version, result.cache),
    )


def router() -> APIRouter:
    api = APIRouter(tags=["Operations"])

    @api.get("/healthz", summary="Liveness", responses=answers(S.HEALTHZ))
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type=JSON)

    @api.get(
        "/ready",
        summary="Readiness: 503 until every configured model is ready",
        responses=answers(S.READINESS, not_ready=S.READINESS),
    )
    async def ready(request: Request) -> Response:
        node: Node = request.app.state.node
        is_ready, workers = await node.group.ready()
        doc = {"ready": is_ready, "models": node.control.repository_index(), "workers": workers}
        return Response(orjson.dumps(doc), status_code=200 if is_ready else 503, media_type=JSON)

    @api.get(
        "/metrics",
        summary="Prometheus metrics",
        responses={200: {"description": "Prometheus text", "content": {CONTENT_TYPE_LATEST: {}}}},
    )
    async def metrics(request: Request) -> Response:
        service: InferenceService = request.app.state.service
        # Rendering is Python work proportional to the series (a few ms): in a thread,
        # so the loop goes on answering meanwhile.
        body = await asyncio.to_thread(service.metrics.render)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return api
