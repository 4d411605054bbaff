"""The one mapping from errors to HTTP responses (domain errors, routing errors, and the unexpected)."""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Scope

from controller.edge.request_id import request_id
from controller.errors import DomainError, error_body

log = logging.getLogger("vpnfleet.http")

#: seed 000's compatibility API keeps its own error shape: {"error": "message"}
COMPAT_PREFIX = "/api/v2ray"


def error_response(exc: DomainError, scope: Scope) -> JSONResponse:
    if scope.get("path", "").startswith(COMPAT_PREFIX):
        body: dict[str, Any] = {"error": exc.message}
    else:
        body = error_body(exc, request_id(scope))
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(body, status_code=exc.status, headers=headers)


async def domain_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return error_response(exc, request.scope)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "RESOURCE_NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
    err = DomainError(exc.detail if isinstance(exc.detail, str) else "error")
    err.status, err.code = exc.status_code, codes.get(exc.status_code, "BAD_REQUEST")
    if exc.status_code == 404:
        err.message = f"no route for {request.method} {request.url.path}"
    return error_response(err, request.scope)


def loggable_path(path: str) -> str:
    """The path for a log line: a subscription URL's short uuid is a secret, so it is left out."""
    return "/sub/<redacted>" if path.startswith("/sub/") else path


async def internal_error_handler(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error in %s %s", request.method, loggable_path(request.url.path))
    err = DomainError("internal error; see the controller log with this request id")
    err.status, err.code = 500, "INTERNAL_ERROR"
    return error_response(err, request.scope)
