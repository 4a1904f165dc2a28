"""The OpenAPI UI at ``/docs``, served from files installed with inferd (no CDN).

Swagger UI's files come from the ``fastapi-offline`` package (``fastapi_offline/static``);
they are mounted under ``/docs/static``.
"""

from __future__ import annotations

import importlib.resources
from typing import Final

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

STATIC: Final = "/docs/static"
#: Asset -> file name inside the package's static folder.
ASSETS: Final[dict[str, str]] = {
    "js": "swagger-ui-bundle.js",
    "css": "swagger-ui.css",
    "favicon": "favicon.png",
}


def add_docs(app: FastAPI) -> None:
    """``GET /docs`` (Swagger UI over ``/openapi.json``) and its assets."""
    folder = importlib.resources.files("fastapi_offline") / "static"
    app.mount(STATIC, StaticFiles(directory=str(folder)), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - API",
            swagger_js_url=f"{root}{STATIC}/{ASSETS['js']}",
            swagger_css_url=f"{root}{STATIC}/{ASSETS['css']}",
            swagger_favicon_url=f"{root}{STATIC}/{ASSETS['favicon']}",
            oauth2_redirect_url=None,
        )
