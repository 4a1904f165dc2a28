"""Open Inference Protocol (KServe V2) REST routes, with Triton's extensions."""

from __future__ import annotations

from typing import Any, Final

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from inferd.core.catalog import ModelMetadata, ServerMetadata
from inferd.core.node import Node
from inferd.core.service import InferenceService
from inferd.core.serving import early
from inferd.core.serving.latency import TARGETED
from inferd.errors import InvalidArgument
from inferd.gateway import requestid, routingkey
from inferd.http import schemas as S
from inferd.http.body import read_body
from inferd.http.codec import (
    HEADER_LENGTH,
    decode_document,
    encode_response,
    parse_json,
    split_body,
)
from inferd.http.headers import deadline_from
from inferd.http.raw import Answer, Call, answer_headers
from inferd.http.schemas import answers

JSON = "application/json"
OCTET_STREAM: Final = b"application/octet-stream"
#: What a route about one model or version answers besides 200.
MODEL: Final = (400, 404, 429, 503)


def _json(doc: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type=JSON)


async def infer(service: InferenceService, call: Call) -> Answer:
    """POST /v2/models/{model}[/versions/{version}]/infer (a raw route, see http/raw.py)."""
    assert call.model is not None  # the route's pattern captures it
    if call.model in TARGETED:  # refused before decoding? (core/serving/early.py)
        early.refuse(service, call.model, call.version, routingkey.current.get(), call.arrived)
    header, binary = split_body(call.body, call.headers.get(HEADER_LENGTH))
    parser = call.json
    doc = await parser.parse(header) if parser.offloads(header) else parse_json(header)
    decoded = decode_document(doc, binary, call.model, call.version)
    decoded.deadline = deadline_from(call.headers)
    decoded.request_id = requestid.current.get()
    decoded.arrived = call.arrived
    decoded.alone = call.alone
    if decoded.shared_memory:
        service.shared_memory.resolve(call.caller(), decoded)
    response = await service.infer(decoded)
    if decoded.shared_memory:
        service.shared_memory.write_outputs(call.caller(), response)
    binary_default = decoded.parameters.get("binary_data_output") is True
    payload, header_length = encode_response(response, binary_default)
    headers = answer_headers(response.version, response.cache)
    if header_length is None:
        return Answer(payload, headers=headers)
    return Answer(
        payload,
        OCTET_STREAM,
        [(b"inference-header-content-length", str(header_length).encode()), *headers],
    )


def _server_metadata(meta: ServerMetadata) -> dict[str, Any]:
    return {"name": meta.name, "version": meta.version, "extensions": list(meta.extensions)}


def _model_metadata(meta: ModelMetadata) -> dict[str, Any]:
    return {
        "name": meta.name,
        "versions": list(meta.versions),
        "platform": meta.platform,
        "inputs": [spec.as_metadata() for spec in meta.inputs],
        "outputs": [spec.as_metadata() for spec in meta.outputs],
    }


def router() -> APIRouter:
    api = APIRouter(prefix="/v2", tags=["Open Inference Protocol"])

    def node_of(request: Request) -> Node:
        node: Node = request.app.state.node
        return node

    @api.get("", summary="Server metadata", responses=answers(S.SERVER_METADATA, 429))
    async def server_metadata(request: Request) -> Response:
        return _json(_server_metadata(node_of(request).catalog.server_metadata()))

    @api.get("/health/live", summary="Server liveness", responses=answers(S.LIVE))
    async def live(request: Request) -> Response:
        return _json({"live": node_of(request).catalog.live()})

    @api.get(
        "/health/ready",
        summary="Server readiness (503 until every model is ready)",
        responses=answers(S.READY, not_ready=S.READY),
    )
    async def ready(request: Request) -> Response:
        is_ready = node_of(request).catalog.ready()
        return _json({"ready": is_ready}, 200 if is_ready else 503)

    @api.get(
        "/models/stats",
        summary="Statistics of every model (Triton extension)",
        responses=answers(S.STATS, 429),
    )
    async def all_stats(request: Request) -> Response:
        node = node_of(request)
        return _json(await node.group.stats(node.catalog.model_stats()))

    @api.get(
        "/models/{model}", summary="Model metadata", responses=answers(S.MODEL_METADATA, *MODEL)
    )
    async def model_metadata(request: Request, model: str) -> Response:
        return _json(_model_metadata(node_of(request).catalog.model_metadata(model)))

    @api.get(
        "/models/{model}/versions/{version}",
        summary="Model version metadata",
        responses=answers(S.MODEL_METADATA, *MODEL),
    )
    async def version_metadata(request: Request, model: str, version: str) -> Response:
        return _json(_model_metadata(node_of(request).catalog.model_metadata(model, version)))

    async def _ready(request: Request, model: str, version: str | None) -> Response:
        reason = node_of(request).catalog.model_unready_reason(model, version)
        if reason is None:
            return _json({"name": model, "ready": True}, 200)
        return _json({"name": model, "ready": False, "reason": reason}, 503)

    @api.get(
        "/models/{model}/ready",
        summary="Model readiness",
        responses=answers(S.MODEL_READY, 400, 404, 429, not_ready=S.MODEL_READY),
    )
    async def model_ready(request: Request, model: str) -> Response:
        return await _ready(request, model, None)

    @api.get(
        "/models/{model}/versions/{version}/ready",
        summary="Model version readiness",
        responses=answers(S.MODEL_READY, 400, 404, 429, not_ready=S.MODEL_READY),
    )
    async def version_ready(request: Request, model: str, version: str) -> Response:
        return await _ready(request, model, version)

    @api.get(
        "/models/{model}/config",
        summary="Model configuration (Triton extension)",
        responses=answers(S.MODEL_CONFIG, *MODEL),
    )
    async def model_config(request: Request, model: str) -> Response:
        return _json(node_of(request).catalog.model_config(model))

    @api.get(
        "/models/{model}/versions/{version}/config",
        summary="Model version configuration",
        responses=answers(S.MODEL_CONFIG, *MODEL),
    )
    async def version_config(request: Request, model: str, version: str) -> Response:
        return _json(node_of(request).catalog.model_config(model, version))

    @api.get(
        "/models/{model}/stats",
        summary="Model statistics (Triton extension)",
        responses=answers(S.STATS, 400, 404, 429),
    )
    async def model_stats(request: Request, model: str) -> Response:
        node = node_of(request)
        return _json(await node.group.stats(node.catalog.model_stats(model)))

    @api.get(
        "/models/{model}/versions/{version}/stats",
        summary="Model version statistics",
        responses=answers(S.STATS, 400, 404, 429),
    )
    async def version_stats(request: Request, model: str, version: str) -> Response:
        node = node_of(request)
        return _json(await node.group.stats(node.catalog.model_stats(model, version)))

    @api.post(
        "/repository/index",
        summary="Models of the repository and their state (admin)",
        responses=answers(S.INDEX, 400, 401, 403, 413, 429),
    )
    async def repository_index(request: Request) -> Response:
        node = node_of(request)
        body = await read_body(request, node.settings.safeguards.max_request_bytes)
        ready_only = False
        if body.strip():
            doc = parse_json(body)
            if not isinstance(doc, dict) or not isinstance(doc.get("ready", False), bool):
                raise InvalidArgument('the index request is {"ready": true|false}')
            ready_only = doc.get("ready", False)
        # admin only (see inferd.gateway): the full reasons
        return _json(node.control.repository_index(full=True, ready_only=ready_only))

    @api.post(
        "/repository/models/{model}/load",
        summary="Load or reload a model (admin)",
        responses=answers(S.EMPTY, 400, 401, 403, 404, 429, 503),
    )
    async def load(request: Request, model: str) -> Response:
        node = node_of(request)
        body = await read_body(request, node.settings.safeguards.max_request_bytes)
        parameters: dict[str, Any] = {}
        if body.strip():
            doc = parse_json(body)
            if not isinstance(doc, dict) or set(doc) - {"parameters"}:
                raise InvalidArgument(
                    'the load request is {"parameters": {"config": "<Triton model '
                    'configuration as JSON>"}} or empty'
                )
            parameters = doc.get("parameters") or {}
            if not isinstance(parameters, dict):
                raise InvalidArgument("the load request's 'parameters' must be an object")
        await node.control.load_model(model, parameters)
        return _json({})

    @api.get(
        "/models/{model}/traffic",
        summary="The model's traffic split (admin)",
        responses=answers(S.TRAFFIC, 400, 401, 403, 404, 429),
    )
    async def get_traffic(request: Request, model: str) -> Response:
        return _json(node_of(request).control.traffic(model))

    @api.put(
        "/models/{model}/traffic",
        summary="Set the model's traffic split, or clear it with null (admin)",
        responses=answers(S.TRAFFIC, 400, 401, 403, 404, 413, 429),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": S.SET_TRAFFIC}},
            }
        },
    )
    async def set_traffic(request: Request, model: str) -> Response:
        node = node_of(request)
        body = await read_body(request, node.settings.safeguards.max_request_bytes)
        doc = parse_json(body)
        if not isinstance(doc, dict) or set(doc) != {"traffic"}:
            raise InvalidArgument(
                'the traffic request is {"traffic": {"<version>": <weight>, ...}} '
                '(weights summing to 100) or {"traffic": null}'
            )
        return _json(node.control.set_traffic(model, doc["traffic"]))

    @api.post(
        "/repository/models/{model}/unload",
        summary="Unload a model (admin)",
        responses=answers(S.EMPTY, 400, 401, 403, 404, 429),
    )
    async def unload(request: Request, model: str) -> Response:
        await node_of(request).control.unload_model(model)
        return _json({})

    @api.get(
        "/models/{model}/shadow",
        summary="Shadow traffic: state, counts and recent disagreements (admin)",
        responses=answers(S.SHADOW, 400, 401, 403, 404, 429),
    )
    async def get_shadow(request: Request, model: str) -> Response:
        return _json(node_of(request).control.shadow_state(model))

    @api.put(
        "/models/{model}/shadow",
        summary="Start, change or (null) stop shadow traffic (admin)",
        responses=answers(S.SHADOW, 400, 401, 403, 404, 413, 429),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": S.SHADOW_REQUEST}},
            }
        },
    )
    async def put_shadow(request: Request, model: str) -> Response:
        node = node_of(request)
        body = await read_body(request, node.settings.safeguards.max_request_bytes)
        return _json(node.control.set_shadow(model, parse_json(body)))

    return api
