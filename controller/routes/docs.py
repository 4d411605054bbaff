"""The API description: /openapi.json generated from the routes' declared models, and Swagger UI at /docs.

The document is built once from the FastAPI routes (their path, query and body models and response models),
then completed with what the edge adds to every operation: the API-key security and the error responses the
middleware can return (400 from the input guards, 401 and 429 from authentication, 413 from the body limit,
422 from validation). Swagger UI is served from the two files of the swagger-ui-bundle package it needs, with
its start script as a file (no inline script, so /docs can have a strict CSP) and without persisting the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import swagger_ui_bundle
from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response

from controller import __version__
from controller.access import public, requirement_of
from controller.api import MAX_ID, STATUS_DESCRIPTIONS, CompatErrorResponse, ErrorResponse, http_routes
from controller.edge.auth import is_public
from controller.edge.errors import COMPAT_PREFIX
from controller.errors import NotFound

_ASSETS = Path(swagger_ui_bundle.swagger_ui_path)
#: the only files of the bundle /docs uses (the package also ships a demo page that loads the petstore)
_STATIC = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css"}

_DOCS_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>vpnfleet API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body></html>"""
# persistAuthorization false: the API key lives in the page only, never in localStorage
_INIT_JS = """window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", persistAuthorization: false});
"""

_DESCRIPTION = ("Run a fleet of VPN nodes. Authenticate with an API key (`X-API-Key` or `Authorization: Bearer "
                "vpf_...`) or an access token from `POST /api/v1/auth/login` (`Authorization: Bearer`). Each "
                "operation names the permission it needs in `x-required-permission`; `x-owner-scoped` ones "
                "answer a `user` account with what it owns only. Every answer carries `X-RateLimit-Limit`, "
                "`-Remaining` and `-Reset`. Errors are `{\"error\": {code, message, request_id, details}}`; "
                "seed 000's `/api/v2ray` answers `{\"error\": message}`.")


def _error_ref(path: str) -> dict[str, Any]:
    name = CompatErrorResponse.__name__ if path.startswith(COMPAT_PREFIX) else ErrorResponse.__name__
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    spec = get_openapi(title="vpnfleet", version=__version__, openapi_version="3.1.0", description=_DESCRIPTION,
                       # all of app.routes: FastAPI >= 0.16x wraps included routers (not APIRoutes themselves);
                       # get_openapi flattens them and skips what is not an APIRoute
                       routes=app.routes)
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for model in (ErrorResponse, CompatErrorResponse):
        for name, schema in model.model_json_schema(ref_template="#/components/schemas/{model}").pop(
                "$defs", {}).items():
            schemas.setdefault(name, schema)
        schemas[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas[model.__name__].pop("$defs", None)
    # FastAPI's own validation-error schemas: unused, the API answers 422 with ErrorResponse
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    components["securitySchemes"] = {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                                     "bearer": {"type": "http", "scheme": "bearer"}}
    spec["security"] = [{"apiKey": []}, {"bearer": []}]
    requirements = {(method.lower(), route.path): requirement_of(route)
                    for route in http_routes(app.routes) for method in route.methods}
    for path, operations in spec.get("paths", {}).items():
        for method, op in operations.items():
            responses = op.setdefault("responses", {})
            edge = [400, 429]  # the input guards (NUL characters in the URL) and rate limits apply everywhere
            if method in ("post", "put", "patch"):
                edge.append(413)
            if op.get("parameters") or op.get("requestBody"):
                edge.append(422)
            requirement = requirements.get((method, path))
            if requirement is not None:
                op["x-required-permission"] = requirement.describe()
                if requirement.owned and not requirement.public:
                    op["x-owner-scoped"] = True
            if is_public(path):
                op["security"] = []
            else:
                edge += [401, 403]
            for status in edge:
                entry = responses.setdefault(str(status), {"description": STATUS_DESCRIPTIONS[status]})
                entry["content"] = _error_ref(path)
            if "422" in responses:
                responses["422"]["content"] = _error_ref(path)
                responses["422"]["description"] = STATUS_DESCRIPTIONS[422]
    _integral_bounds(spec)
    return spec


_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _integral_bounds(node: Any) -> None:
    """FastAPI's OpenAPI model stores numeric bounds as floats: ``le=MAX_ID`` would be published as
    9.223372036854776e+18, which is 2**63, one more than the server takes. Integral bounds go back to ints
    (the only bound near 2**63 the API has is MAX_ID)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _BOUNDS and isinstance(value, float) and value.is_integer():
                node[key] = MAX_ID if int(value) == MAX_ID + 1 else int(value)
            else:
                _integral_bounds(value)
    elif isinstance(node, list):
        for item in node:
            _integral_bounds(item)


router = APIRouter(include_in_schema=False)
_cache: dict[int, dict[str, Any]] = {}


@router.get("/openapi.json", dependencies=[public()])
async def openapi(request: Request) -> Response:
    """The OpenAPI 3.1 document of this API (built once)."""
    app = request.app
    if id(app) not in _cache:
        _cache[id(app)] = build_openapi(app)
    return JSONResponse(_cache[id(app)])


@router.get("/docs", dependencies=[public()])
async def docs() -> Response:
    """Swagger UI."""
    return HTMLResponse(_DOCS_HTML)


@router.get("/docs/init.js", dependencies=[public()])
async def docs_init() -> Response:
    return Response(_INIT_JS, media_type="text/javascript")


@router.get("/docs/static/{name}", dependencies=[public()])
async def docs_static(name: str) -> Response:
    if name not in _STATIC:
        raise NotFound(f"no file {name} in /docs/static")
    return FileResponse(_ASSETS / name, media_type=_STATIC[name])
