"""The one front: every route, the fast inference routes included, passes the same
middleware (CORS), admission, request id and access log."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse

from inferd.gateway.keys import Scope, new_key
from inferd.http.app import create_app
from tests.conftest import NodeFactory

ADMIN_KEY, ADMIN = new_key("ops", Scope.ADMIN)
INFER_KEY, INFER = new_key("app", Scope.INFER)
KEYS = {"api_keys": [ADMIN.line(), INFER.line()]}
ORIGIN = "https://app.example.com"
ROW = {"inputs": [1, 2, 3, 4]}
V2 = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}


@pytest.fixture
def make_client(example_repo: Path, node_factory: NodeFactory) -> Any:
    async def make(address: str = "127.0.0.1", **server: Any) -> httpx.AsyncClient:
        node = node_factory(example_repo, server=server, models={"default_model": "tiny"})
        await node.start()
        transport = httpx.ASGITransport(app=create_app(node), client=(address, 4000))
        return httpx.AsyncClient(transport=transport, base_url="http://inferd")

    return make


@pytest.fixture
async def keyed(make_client: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with await make_client(**KEYS, require_api_key=True) as client:
        yield client


CONTROL = [
    ("POST", "/v2/repository/index"),
    ("POST", "/v2/repository/models/tiny/load"),
    ("POST", "/v2/repository/models/tiny/unload"),
    ("GET", "/v2/models/tiny/shadow"),
    ("PUT", "/v2/models/tiny/shadow"),
]


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.6", "::1", "10.1.2.3"])
@pytest.mark.parametrize(("method", "path"), CONTROL)
async def test_by_default_every_control_endpoint_is_off(
    make_client: Any, address: str, method: str, path: str
) -> None:
    async with await make_client(address) as client:
        answer = await client.request(method, path)
        assert answer.status_code == 403
        assert "inferd keys new --name NAME --scope admin" in answer.json()["error"]
        assert (await client.get("/v2/models/tiny/ready")).status_code == 200


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer nope"}, 401),
        ({"Authorization": f"Basic {ADMIN_KEY}"}, 401),
        ({"Authorization": f"Bearer {INFER_KEY}"}, 403),
        ({"X-API-Key": INFER_KEY}, 403),
        ({"Authorization": f"Bearer {ADMIN_KEY}"}, 200),
        ({"X-API-Key": ADMIN_KEY}, 200),
    ],
)
async def test_control_needs_an_admin_key(
    keyed: httpx.AsyncClient, headers: dict[str, str], status: int
) -> None:
    answer = await keyed.post("/v2/repository/index", headers=headers)
    assert answer.status_code == status, answer.text
    if status == 401:
        assert answer.headers["www-authenticate"] == "Bearer"


async def test_an_admin_key_is_refused_a_bad_index_body(keyed: httpx.AsyncClient) -> None:
    answer = await keyed.post(
        "/v2/repository/index", content=b'{"ready": "yes"}', headers={"X-API-Key": ADMIN_KEY}
    )
    assert answer.status_code == 400
    assert "ready" in answer.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/predict", ROW),
        ("POST", "/models/tiny/predict", ROW),
        ("POST", "/v2/models/tiny/infer", V2),
        ("GET", "/v2/models/tiny", None),
        ("GET", "/v2", None),
    ],
)
async def test_require_api_key_closes_inference_fast_routes_too(
    keyed: httpx.AsyncClient, method: str, path: str, body: Any
) -> None:
    assert (await keyed.request(method, path, json=body)).status_code == 401
    answer = await keyed.request(method, path, json=body, headers={"X-API-Key": INFER_KEY})
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    "path", ["/healthz", "/ready", "/v2/health/live", "/v2/health/ready", "/metrics"]
)
async def test_probes_stay_open(keyed: httpx.AsyncClient, path: str) -> None:
    assert (await keyed.get(path)).status_code == 200


async def test_the_request_id_is_kept_or_made_and_returned_everywhere(
    keyed: httpx.AsyncClient,
) -> None:
    given = await keyed.post("/predict", json=ROW, headers={"X-Request-Id": "abc-1"})
    assert given.headers["x-request-id"] == "abc-1"
    refused = await keyed.post("/predict", json=ROW, headers={"X-Request-Id": "abc-2"})
    assert refused.status_code == 401
    assert (refused.headers["x-request-id"], refused.json()["request_id"]) == ("abc-2", "abc-2")
    for bad in ("has space", "x" * 129):
        made = await keyed.get("/healthz", headers={"X-Request-Id": bad})
        assert re.fullmatch("[0-9a-f]{32}", made.headers["x-request-id"])
    missing = await keyed.get("/v2/models/nope", headers={"X-API-Key": INFER_KEY})
    assert missing.status_code == 404
    assert missing.json()["request_id"] == missing.headers["x-request-id"]


async def test_the_access_log_names_the_key_never_the_key_itself(
    make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="inferd.access")
    async with await make_client(**KEYS, access_log="plain") as client:
        await client.post(
            "/v2/models/tiny/infer",
            json=V2,
            headers={"X-API-Key": INFER_KEY, "X-Request-Id": "r-9"},
        )
        await client.post("/v2/repository/index", headers={"Authorization": f"Bearer {INFER_KEY}"})
    infer, refused = [r.getMessage() for r in caplog.records if r.name == "inferd.access"]
    assert re.fullmatch(
        r"POST /v2/models/tiny/infer 200 [0-9.]+ms model=tiny version=- key=app id=r-9", infer
    )
    assert refused.startswith("POST /v2/repository/index 403 ")
    assert INFER_KEY not in caplog.text


@pytest.mark.parametrize(
    ("path", "body"), [("/v2/models/tiny/infer", V2), ("/predict", ROW), ("/v2/models/tiny", None)]
)
async def test_cors_preflight_and_header_on_every_route(
    make_client: Any, path: str, body: Any
) -> None:
    async with await make_client(cors_origins=[ORIGIN]) as client:
        preflight = await client.options(
            path,
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type, x-routing-key",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        assert "POST" in preflight.headers["access-control-allow-methods"]
        method = "POST" if body else "GET"
        answer = await client.request(method, path, json=body, headers={"Origin": ORIGIN})
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == ORIGIN
        assert "x-request-id" in answer.headers["access-control-expose-headers"]
        foreign = await client.request(
            method, path, json=body, headers={"Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in foreign.headers


async def test_without_origins_there_are_no_cors_headers(make_client: Any) -> None:
    async with await make_client() as client:
        answer = await client.post("/predict", json=ROW, headers={"Origin": ORIGIN})
        assert answer.status_code == 200
        assert "access-control-allow-origin" not in answer.headers


@pytest.mark.parametrize(
    ("origin", "host", "status"),
    [
        ("https://evil.example", "inferd", 403),  # a cross-origin text/plain POST
        ("null", "inferd", 403),  # a sandboxed page
        ("http://inferd", "inferd", 200),  # same origin
    ],
)
async def test_cross_origin_control_requests_are_refused_even_with_a_key(
    make_client: Any, origin: str, host: str, status: int
) -> None:
    async with await make_client(**KEYS) as client:
        answer = await client.post(
            "/v2/repository/index",
            content=b"{}",
            headers={
                "Content-Type": "text/plain",
                "Origin": origin,
                "Host": host,
                "X-API-Key": ADMIN_KEY,
            },
        )
        assert answer.status_code == status, answer.text


def test_websocket_handshake_cors_and_keys(example_repo: Path, node_factory: NodeFactory) -> None:
    node = node_factory(
        example_repo,
        server={**KEYS, "require_api_key": True, "cors_origins": [ORIGIN]},
        models={"default_model": "tiny"},
    )
    with TestClient(create_app(node)) as client:
        client.portal.call(node.start)  # on the client's loop, as a server would
        headers = {"Origin": ORIGIN, "X-API-Key": INFER_KEY, "X-Request-Id": "ws-7"}
        with client.websocket_connect("/predict/stream", headers=headers) as ws:
            ws.send_json({"inputs": [1, 2, 3, 4]})
            assert len(ws.receive_json()["predictions"]) == 2
        for refused, status in (
            ({"Origin": ORIGIN}, 401),
            ({"Origin": "https://evil.example", "X-API-Key": INFER_KEY}, 403),
        ):
            with (
                pytest.raises(WebSocketDenialResponse) as denied,
                client.websocket_connect("/predict/stream", headers=refused),
            ):
                pass
            assert denied.value.status_code == status
            assert denied.value.json()["request_id"] == denied.value.headers["x-request-id"]
