"""The ASGI app's front: the rate limit for every transport on the port, and the raw
inference routes ahead of FastAPI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from inferd.http.app import create_app

LIMITED = {"rate_limit": {"enabled": True, "requests_per_minute": 2}}


def client_from(app: Any, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 4000))
    return httpx.AsyncClient(transport=transport, base_url="http://inferd")


async def test_the_rate_limit_is_per_client_and_spares_probes(
    example_repo: Path, node_factory: Any
) -> None:
    node = node_factory(example_repo, safeguards=LIMITED, models={"default_model": "tiny"})
    await node.start()
    app = create_app(node)
    async with client_from(app, "10.0.0.1") as first, client_from(app, "10.0.0.2") as second:
        for path in ("/predict", "/v2/models/tiny"):  # raw and FastAPI routes alike
            answer = await (
                first.post(path, json={"inputs": [1, 2, 3, 4]})
                if path == "/predict"
                else first.get(path)
            )
            assert answer.status_code == 200, answer.text
        refused = await first.post("/predict", json={"inputs": [1, 2, 3, 4]})
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.headers["ratelimit-reset"] == refused.headers["retry-after"]
        assert refused.headers["ratelimit-limit"] == "2"
        assert refused.headers["ratelimit-remaining"] == "0"
        assert refused.json()["error"] == "rate limit of 2 requests per minute exceeded"
        assert (await first.get("/v2/models/tiny")).status_code == 429
        for probe in ("/healthz", "/ready", "/metrics", "/v2/health/live", "/v2/health/ready"):
            assert (await first.get(probe)).status_code == 200, probe
        assert (await second.post("/predict", json={"inputs": [1, 2, 3, 4]})).status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/predict",
        "/models/tiny/predict",
        "/v2/models/tiny/infer",
        "/v2/models/tiny/versions/1/infer",
    ],
)
async def test_raw_routes_answer_other_methods_405(
    example_client: httpx.AsyncClient, path: str
) -> None:
    answer = await example_client.get(path)
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"
    assert answer.json() == {
        "error": "Method Not Allowed",
        "request_id": answer.headers["x-request-id"],
    }


@pytest.mark.parametrize(
    "path",
    ["/v2/models//infer", "/v2/models/tiny/versions//infer", "/models//predict", "/predict/"],
)
async def test_empty_path_segments_are_not_raw_routes(
    example_client: httpx.AsyncClient, path: str
) -> None:
    answer = await example_client.post(path, json={"inputs": [1, 2, 3, 4]})
    assert answer.status_code == 404
    assert answer.json() == {
        "error": f"Not Found: no route {path} (the API: /docs)",
        "request_id": answer.headers["x-request-id"],
    }


async def test_a_body_over_the_limit_is_refused_while_it_streams(
    example_repo: Path, node_factory: Any
) -> None:
    node = node_factory(example_repo, safeguards={"max_request_size_mb": 0.001})
    await node.start()

    async def body() -> Any:  # chunked: no Content-Length to refuse it by
        for _ in range(4):
            yield b" " * 400

    async with client_from(create_app(node), "127.0.0.1") as client:
        answer = await client.post("/v2/models/tiny/infer", content=body())
        assert answer.status_code == 413
        assert "exceeds the" in answer.json()["error"]
        ok = await client.post("/models/tiny/predict", json={"inputs": [1, 2, 3, 4]})
        assert ok.status_code == 200


async def rotating(client: httpx.AsyncClient, count: int) -> list[int]:
    """Statuses of ``count`` requests, each claiming another X-Forwarded-For address."""
    statuses = []
    for i in range(count):
        headers = {"X-Forwarded-For": f"203.0.113.{i}"}
        answer = await client.post("/predict", json={"inputs": [1, 2, 3, 4]}, headers=headers)
        statuses.append(answer.status_code)
    return statuses


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(
    example_repo: Path, node_factory: Any
) -> None:
    node = node_factory(example_repo, safeguards=LIMITED, models={"default_model": "tiny"})
    await node.start()
    async with client_from(create_app(node), "127.0.0.1") as local:
        assert await rotating(local, 4) == [200, 200, 429, 429]


async def test_forwarded_for_from_a_trusted_proxy_names_the_client(
    example_repo: Path, node_factory: Any
) -> None:
    node = node_factory(
        example_repo,
        safeguards=LIMITED,
        models={"default_model": "tiny"},
        server={"trusted_proxies": ["127.0.0.1"]},
    )
    await node.start()
    async with client_from(create_app(node), "127.0.0.1") as proxy:
        assert await rotating(proxy, 4) == [200, 200, 200, 200]
        same = {"X-Forwarded-For": "203.0.113.0"}  # its second request, then its third
        answer = await proxy.post("/predict", json={"inputs": [1, 2, 3, 4]}, headers=same)
        assert answer.status_code == 200
        answer = await proxy.post("/predict", json={"inputs": [1, 2, 3, 4]}, headers=same)
        assert answer.status_code == 429
