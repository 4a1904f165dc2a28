"""/docs works offline: the page's assets are served by inferd; OpenAPI says what routes answer."""

from __future__ import annotations

import re

import httpx
import pytest


async def test_docs_page_uses_only_local_assets(example_client: httpx.AsyncClient) -> None:
    page = await example_client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    urls += re.findall(r"""url: ?["']([^"']+)["']""", page.text)
    assert sorted(urls) == [
        "/docs/static/favicon.png",
        "/docs/static/swagger-ui-bundle.js",
        "/docs/static/swagger-ui.css",
        "/openapi.json",
    ]
    for url in urls:
        asset = await example_client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url
    bundle = await example_client.get("/docs/static/swagger-ui-bundle.js")
    assert "SwaggerUIBundle" in bundle.text


async def test_redoc_from_a_cdn_is_gone(example_client: httpx.AsyncClient) -> None:
    assert (await example_client.get("/redoc")).status_code == 404


@pytest.fixture
async def openapi(example_client: httpx.AsyncClient) -> dict[str, object]:
    doc: dict[str, object] = (await example_client.get("/openapi.json")).json()
    return doc


def _responses(openapi: dict[str, object], path: str, method: str = "get") -> dict[str, object]:
    paths = openapi["paths"]
    assert isinstance(paths, dict)
    responses: dict[str, object] = paths[path][method]["responses"]
    return responses


async def test_no_route_documents_a_422(openapi: dict[str, object]) -> None:
    paths = openapi["paths"]
    assert isinstance(paths, dict)
    documented = {
        (path, method): set(operation["responses"])
        for path, item in paths.items()
        for method, operation in item.items()
    }
    assert [key for key, codes in documented.items() if "422" in codes] == []
    assert "HTTPValidationError" not in str(openapi)


@pytest.mark.parametrize(
    ("path", "codes", "required"),
    [
        (
            "/v2/models/{model}",
            {"200", "400", "404", "429", "503"},
            ["name", "versions", "platform", "inputs", "outputs"],
        ),
        (
            "/v2/models/{model}/versions/{version}/config",
            {"200", "400", "404", "429", "503"},
            ["name", "platform", "backend", "max_batch_size", "input", "output"],
        ),
        ("/v2/models/{model}/ready", {"200", "400", "404", "429", "503"}, ["name", "ready"]),
        ("/v2/models/{model}/stats", {"200", "400", "404", "429"}, ["model_stats"]),
        ("/v2", {"200", "429"}, ["name", "version", "extensions"]),
        ("/v2/health/ready", {"200", "503"}, ["ready"]),
        ("/ready", {"200", "503"}, ["ready", "models", "workers"]),
    ],
)
async def test_metadata_routes_document_their_answers(
    openapi: dict[str, object], path: str, codes: set[str], required: list[str]
) -> None:
    responses = _responses(openapi, path)
    assert set(responses) == codes
    ok = responses["200"]
    assert isinstance(ok, dict)
    assert ok["content"]["application/json"]["schema"]["required"] == required


async def test_documented_404_is_what_the_route_answers(
    example_client: httpx.AsyncClient, openapi: dict[str, object]
) -> None:
    not_found = _responses(openapi, "/v2/models/{model}")["404"]
    assert isinstance(not_found, dict)
    assert not_found["content"]["application/json"]["schema"]["required"] == [
        "error",
        "request_id",
    ]
    response = await example_client.get("/v2/models/nope")
    assert response.status_code == 404
    assert set(response.json()) == {"error", "request_id"}
    meta = (await example_client.get("/v2/models/tiny")).json()
    assert set(meta) == {"name", "versions", "platform", "inputs", "outputs"}
