"""The API description: /openapi.json generated from the routes' docstrings, and Swagger UI at /docs."""

from __future__ import annotations

from typing import Any

import swagger_ui_bundle
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.schemas import SchemaGenerator
from starlette.staticfiles import StaticFiles

from controller import __version__
from controller.http import json

_DOCS_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>vpnfleet API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", persistAuthorization: true});
</script></body></html>"""


def build_openapi(routes: list[BaseRoute], models: list[type[BaseModel]]) -> dict[str, Any]:
    """OpenAPI 3.1 from each route's docstring (the YAML after ``---``) plus the request-body models."""
    generator = SchemaGenerator({
        "openapi": "3.1.0",
        "info": {"title": "vpnfleet", "version": __version__,
                 "description": "Run a fleet of VPN nodes. Authenticate with `X-API-Key` or `Authorization: Bearer`."},
        "components": {
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                                "bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {m.__name__: m.model_json_schema(ref_template="#/components/schemas/{model}") for m in models},
        },
        "security": [{"apiKey": []}, {"bearer": []}],
    })
    return generator.get_schema(routes)


def make_routes(api_routes: list[BaseRoute], models: list[type[BaseModel]]) -> list[BaseRoute]:
    spec: dict[str, Any] = {}

    async def openapi(request: Request):
        """The OpenAPI document of this API.
        ---
        summary: OpenAPI document
        tags: [system]
        security: []
        responses:
          200: {description: "OpenAPI 3.1"}
        """
        if not spec:
            spec.update(build_openapi(request.app.routes, models))
        return json(spec)

    async def docs(request: Request):
        """Swagger UI.
        ---
        summary: Swagger UI
        tags: [system]
        security: []
        responses:
          200: {description: "HTML"}
        """
        return HTMLResponse(_DOCS_HTML)

    return [
        Route("/openapi.json", openapi, methods=["GET"], include_in_schema=True),
        Route("/docs", docs, methods=["GET"]),
        Mount("/docs/static", app=StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-static"),
    ]
