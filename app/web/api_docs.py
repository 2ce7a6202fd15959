"""API documentation pages that work offline: Swagger UI at `/docs`, ReDoc at `/redoc`.

FastAPI's own pages load their JavaScript and CSS from a CDN, so they are blank without
internet. Here the same pages load the assets that the installed `fastapi-offline` package
ships, served by the app under `/static/docs/` (a fixed set of file names: no request value
becomes a path), and ReDoc without its web fonts.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

DOCS_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
ASSET_URL = "/static/docs"


def assets_dir() -> Path:
    """The folder of the Swagger UI and ReDoc files inside the installed `fastapi_offline`."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).resolve().parent / "static"


REDOC_LOGO_URL = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
"""ReDoc's "powered by" footer loads its logo from a CDN; the served bundle points it at the
local favicon instead, so that the page makes no request to another host."""


@functools.cache
def _asset(name: str) -> tuple[bytes, str]:
    body = (assets_dir() / name).read_bytes()
    if name == "redoc.standalone.js":
        body = body.replace(REDOC_LOGO_URL, f"{ASSET_URL}/favicon.png".encode())
    return body, f'"{hashlib.sha256(body).hexdigest()[:20]}"'


def install_offline_docs(app: FastAPI) -> None:
    """Serve `/docs` and `/redoc` with local assets (create the app with docs_url=None and
    redoc_url=None, then call this)."""
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(f"{ASSET_URL}/{{name}}", include_in_schema=False)
    def docs_asset(name: str, request: Request) -> Response:
        """One Swagger UI / ReDoc file, revalidated by ETag."""
        if name not in DOCS_ASSETS:
            raise HTTPException(status_code=404, detail="no such docs asset")
        body, etag = _asset(name)
        headers = {"ETag": etag, "Cache-Control": "public, max-age=86400"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=DOCS_ASSETS[name], headers=headers)

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        """Swagger UI over this app's OpenAPI document."""
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} API",
            swagger_js_url=f"{root}{ASSET_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSET_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSET_URL}/favicon.png",
            swagger_ui_parameters={"defaultModelsExpandDepth": 2, "docExpansion": "list"},
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        """ReDoc over this app's OpenAPI document."""
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} API reference",
            redoc_js_url=f"{root}{ASSET_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSET_URL}/favicon.png",
            with_google_fonts=False,
        )
