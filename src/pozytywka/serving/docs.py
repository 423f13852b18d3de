"""/docs (Swagger UI) and /redoc from the service's own files, not a CDN, so that they render
offline: FastAPI's recipe for self-hosting the docs' JavaScript and CSS, over the Swagger UI and
ReDoc bundles the fastapi-offline package ships."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs/static"  # swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js, favicon.png
SWAGGER_REDIRECT = "/docs/oauth2-redirect"


def add_docs(app: FastAPI) -> None:
    """The docs pages FastAPI would serve, on ``app`` made with ``docs_url=None, redoc_url=None``:
    the same paths and OpenAPI document, with assets under ASSETS."""
    app.mount(ASSETS, StaticFiles(packages=[("fastapi_offline", "static")]), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    def root(request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=root(request) + openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=root(request) + SWAGGER_REDIRECT,
            swagger_js_url=f"{root(request)}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root(request)}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root(request)}{ASSETS}/favicon.png",
        )

    @app.get(SWAGGER_REDIRECT, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(
            openapi_url=root(request) + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root(request)}{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root(request)}{ASSETS}/favicon.png",
            with_google_fonts=False,
        )
