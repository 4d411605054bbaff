"""The one mapping from errors to HTTP responses: domain errors, request validation, routing, the unexpected."""

from __future__ import annotations

import logging
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match

from controller.api import http_routes
from starlette.types import Scope

from controller.edge.request_id import request_id
from controller.errors import BadRequest, DomainError, ValidationFailed, error_body

log = logging.getLogger("vpnfleet.http")

#: seed 000's compatibility API keeps its own error shape: {"error": "message"}
COMPAT_PREFIX = "/api/v2ray"


def error_response(exc: DomainError, scope: Scope, headers: dict[str, str] | None = None) -> JSONResponse:
    if scope.get("path", "").startswith(COMPAT_PREFIX):
        body: dict[str, Any] = {"error": exc.message}
    else:
        body = error_body(exc, request_id(scope))
    headers = dict(headers or {})
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    retry_after = getattr(exc, "retry_after", None)  # TooManyRequests: when to try again (RFC 9110)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, int(retry_after)))
    return JSONResponse(body, status_code=exc.status, headers=headers or None)


async def domain_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return error_response(exc, request.scope)


def _field(loc: tuple[Any, ...]) -> tuple[str, str]:
    """(where, name) of a validation error's location: ("body", "plan.days"), ("query", "size"), ..."""
    where = str(loc[0]) if loc else "body"
    return where, ".".join(str(p) for p in loc[1:])


def validation_failure(exc: RequestValidationError, content_type: str = "application/json") -> DomainError:
    """FastAPI's request validation error as the API's: 400 for a body that is not a JSON object at all,
    else 422 naming the first bad field (and every bad field in details)."""
    errs = exc.errors()
    for e in errs:
        where, name = _field(tuple(e.get("loc", ())))
        kind = e.get("type", "")
        if kind == "json_invalid":  # its loc is ("body", <offset>)
            return BadRequest(f"request body is not valid JSON: {e.get('ctx', {}).get('error', e['msg'])}")
        if where == "body" and not name:
            if kind == "missing":
                return BadRequest("request body is required (JSON)")
            if "json" not in content_type:  # FastAPI parses a body as JSON only when it is labelled so
                return BadRequest("request body must be JSON, sent with Content-Type: application/json "
                                  f"(got {content_type or 'none'!r}; curl: --json '{{...}}')")
            return BadRequest("request body must be a JSON object")
    details: dict[str, str] = {}
    first = ""
    for e in errs:
        where, name = _field(tuple(e.get("loc", ())))
        key = name or where
        details.setdefault(key, e["msg"])
        if not first:
            first = (f"invalid field '{key}': {e['msg']}" if where == "body"
                     else f"{where} parameter '{key}': {e['msg']}")
    return ValidationFailed(first or "invalid request", details)


async def request_validation_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    err = validation_failure(exc, request.headers.get("content-type", "").split(";")[0].strip().lower()[:100])
    if request.url.path.startswith(COMPAT_PREFIX):
        err.status = 400  # seed 000 answers every bad input with a 400
    return error_response(err, request.scope)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "RESOURCE_NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
    err = DomainError(exc.detail if isinstance(exc.detail, str) else "error")
    err.status, err.code = exc.status_code, codes.get(exc.status_code, "BAD_REQUEST")
    if exc.status_code == 404:
        err.message = f"no route for {request.method} {request.url.path}"
    elif exc.status_code == 405:
        err.message = f"{request.method} is not allowed on {request.url.path}"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:  # Allow (RFC 9110): every method the path takes, over all routes of the path
        headers["Allow"] = ", ".join(sorted(_methods_of(request)) or headers.get("Allow", "").split(", "))
    return error_response(err, request.scope, headers=headers)


def _methods_of(request: Request) -> set[str]:
    """The methods of every route whose path matches the request's (Starlette's own Allow names only the
    first route that matched the path, and a path may have one route per method)."""
    methods: set[str] = set()
    for route in http_routes(request.app.router.routes):
        if route.methods:
            match, _ = route.matches(request.scope)
            if match != Match.NONE:
                methods |= route.methods - {"HEAD"}  # implied by GET, and not part of the API description
    return methods


def loggable_path(path: str) -> str:
    """The path for a log line: a subscription URL's short uuid is a secret, so it is left out."""
    return "/sub/<redacted>" if path.startswith("/sub/") else path


async def internal_error_handler(request: Request, exc: Exception) -> Response:
    """The unexpected: logged with the request id the body names; the response carries it as a header too
    (this runs outside the request-id middleware, in Starlette's outermost error middleware)."""
    rid = request_id(request.scope)
    log.exception("unhandled error in %s %s [request_id=%s]", request.method, loggable_path(request.url.path), rid)
    err = DomainError("internal error; see the controller log with this request id")
    err.status, err.code = 500, "INTERNAL_ERROR"
    return error_response(err, request.scope, headers={"X-Request-ID": rid} if rid else None)
