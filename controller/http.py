"""HTTP plumbing shared by all routes: request ids, API-key auth, the audit log, error mapping, parsing.

Handlers stay thin: they parse with the helpers here, call a service, and return ``json(...)``. Domain errors
become responses in exactly one place (``error_response``).
"""

from __future__ import annotations

import datetime as dt
import json as jsonlib
import logging
import re
import secrets
import urllib.parse
import uuid
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controller.auth import ApiKeyStore
from controller.errors import BadRequest, DomainError, NotFound, Unauthorized, ValidationFailed, error_body
from controller.services.operations import OperationLog

log = logging.getLogger("vpnfleet.http")

#: paths anyone may call (DESIGN.md): health, the API description, and token-authenticated downloads
PUBLIC_PATHS = ("/api/v1/health", "/openapi.json")
PUBLIC_PREFIXES = ("/docs", "/sub/", "/agent/package/")
#: seed 000's compatibility API keeps its own error shape: {"error": "message"}
COMPAT_PREFIX = "/api/v2ray"
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,40}$")
MAX_AUDIT_BODY = 64 * 1024


def json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers=headers)


def request_id(scope: Scope) -> str:
    return scope.get("state", {}).get("request_id", "")


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


# -- middleware ---------------------------------------------------------------------------------------------

class RequestIdMiddleware:
    """Gives every request an id (the caller's X-Request-ID when sane) and echoes it in the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _REQUEST_ID.match(given) else "req_" + secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", rid.encode()))
            await send(message)

        await self.app(scope, receive, send_with_id)


class InputGuardMiddleware:
    """Refuses NUL characters in the path or query: no route takes them, PostgreSQL cannot store them, and
    refusing them here spares every handler the check (JSON bodies are checked in read_body)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and ("\x00" in scope["path"]
                                        or b"\x00" in urllib.parse.unquote_to_bytes(scope["query_string"])):
            return await error_response(BadRequest("NUL characters are not allowed in the URL"),
                                        scope)(scope, receive, send)
        await self.app(scope, receive, send)


class AuthMiddleware:
    """Requires an API key (X-API-Key or Authorization: Bearer) everywhere but PUBLIC_PATHS."""

    def __init__(self, app: ASGIApp, keys: ApiKeyStore) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        presented = headers.get(b"x-api-key", b"").decode("latin-1").strip()
        if not presented:
            auth = headers.get(b"authorization", b"").decode("latin-1")
            if auth.lower().startswith("bearer "):
                presented = auth[7:].strip()
        if not presented:
            return await error_response(Unauthorized("API key required (X-API-Key or Authorization: Bearer)"),
                                        scope)(scope, receive, send)
        principal = self.keys.authenticate(presented)
        if principal is None:
            return await error_response(Unauthorized("invalid API key"), scope)(scope, receive, send)
        scope["state"]["principal"] = principal
        await self.app(scope, receive, send)


class AuditMiddleware:
    """Records every mutating call (after it finished) in the operations log."""

    def __init__(self, app: ASGIApp, operations: OperationLog) -> None:
        self.app = app
        self.operations = operations

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in MUTATING or "principal" not in scope.get("state", {}):
            return await self.app(scope, receive, send)
        body = bytearray()
        status = 500
        error_body_bytes = bytearray()
        recorded = False

        async def receive_and_keep() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(body) < MAX_AUDIT_BODY:
                body.extend(message.get("body", b"")[: MAX_AUDIT_BODY - len(body)])
            return message

        async def send_and_note(message: Message) -> None:
            nonlocal status, recorded
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                if status >= 400 and len(error_body_bytes) < 4096:
                    error_body_bytes.extend(message.get("body", b"")[:4096])
                if not message.get("more_body", False):
                    # the entry is written before the caller sees the end of the response, so a client that
                    # reads the operations log right after its call always finds the call there
                    recorded = True
                    await self._record(scope, bytes(body), status, bytes(error_body_bytes))
            await send(message)

        try:
            await self.app(scope, receive_and_keep, send_and_note)
        finally:
            if not recorded:  # the handler failed before answering, or the client went away
                await self._record(scope, bytes(body), status, bytes(error_body_bytes))

    async def _record(self, scope: Scope, body: bytes, status: int, err: bytes) -> None:
        route = scope.get("route")
        template = getattr(route, "path", scope["path"])
        params = scope.get("path_params") or {}
        target_id = _canonical_id(params.get("id") or params.get("uuid"))
        parts = [p for p in template.split("/") if p and not p.startswith("{")]
        # "/api/v1/nodes/{id}/start" -> target "node", action "POST /api/v1/nodes/{id}/start"
        resource = parts[2] if len(parts) > 2 else (parts[-1] if parts else "")
        target_type = resource.rstrip("s") or None
        try:
            payload = jsonlib.loads(body) if body else None
        except (ValueError, RecursionError):
            payload = {"_raw": body[:200].decode("utf-8", "replace").replace("\x00", "")}
        if _has_nul(payload):  # refused by read_body; PostgreSQL's JSON cannot hold it either
            payload = {"_raw": "(a body with NUL characters)"}
        message = None
        if status >= 400:
            try:
                e = jsonlib.loads(err).get("error")
                message = e.get("message") if isinstance(e, dict) else str(e)
            except (ValueError, AttributeError):
                message = err[:500].decode("utf-8", "replace") or None
        if target_id is None and status < 400 and isinstance(scope["state"].get("created_id"), str):
            target_id = scope["state"]["created_id"]
        # seed 004: a subscriber's operations are found by client_id
        client_id = _canonical_id(params.get("client_id")) or (target_id if resource == "clients" else None)
        try:
            await self.operations.record(
                actor=scope["state"]["principal"].name, action=f"{scope['method']} {template}",
                target_type=target_type, target_id=target_id, payload=payload, status_code=status,
                error=message, request_id=request_id(scope), client_id=client_id,
            )
        except Exception:  # the audit log must never turn a finished call into a failure
            log.exception("could not write the operations log")


def _canonical_id(value: str | None) -> str | None:
    """An id from the path as the API writes it (routes accept any form uuid.UUID parses: upper case, braces,
    urn:uuid:), so the operations log finds it by the id; anything else is kept, cut to the column's size."""
    if value is None:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return value[:36]


def _has_nul(data: Any) -> bool:
    """Does any string (key or value) in this parsed JSON hold a NUL character?"""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


# -- parsing ----------------------------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


async def read_body(request: Request, model: type[M], allow_empty: bool = False) -> M:
    """Parse and validate a JSON body; errors name the field."""
    raw = await request.body()
    if not raw.strip():
        if allow_empty:
            raw = b"{}"
        else:
            raise BadRequest("request body is required (JSON)")
    try:
        data = jsonlib.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("request body is nested too deeply") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    if _has_nul(data):
        raise BadRequest("request body holds a NUL character (\\u0000), which no field accepts")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = {".".join(str(p) for p in e["loc"]) or "body": e["msg"] for e in exc.errors()}
        first = next(iter(details.items()))
        raise ValidationFailed(f"invalid field '{first[0]}': {first[1]}", details) from None


def path_uuid(request: Request, name: str, not_found: str) -> str:
    """A UUID path parameter, normalised; anything else is a 404 with ``not_found`` + the raw value."""
    raw = request.path_params[name]
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise NotFound(f"{not_found}{raw}") from None


def path_int(request: Request, name: str, not_found: str) -> int:
    """A numeric id path parameter; anything else is a 404 with ``not_found`` + the raw value."""
    raw = request.path_params[name]
    if not raw.isdigit() or len(raw) > 18:
        raise NotFound(f"{not_found}{raw}")
    return int(raw)


def query_int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed(f"query parameter '{name}' must be an integer", {name: "not an integer"}) from None
    if not lo <= value <= hi:
        raise ValidationFailed(f"query parameter '{name}' must be between {lo} and {hi}", {name: "out of range"})
    return value


def query_bool(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise ValidationFailed(f"query parameter '{name}' must be true or false", {name: "not a boolean"})


def query_time(request: Request, name: str) -> dt.datetime | None:
    """ISO 8601 (Z or offset) or unix seconds."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        if re.fullmatch(r"\d+(\.\d+)?", raw):
            return dt.datetime.fromtimestamp(float(raw), dt.timezone.utc)
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise ValidationFailed(f"query parameter '{name}' must be an ISO 8601 time or unix seconds",
                               {name: "bad time"}) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def page_params(request: Request) -> tuple[int, int]:
    return query_int(request, "page", 1, 1, 1_000_000), query_int(request, "size", 50, 1, 500)


def paginated(items: list[Any], total: int, page: int, size: int) -> dict[str, Any]:
    return {"items": items, "total": total, "page": page, "size": size,
            "pages": (total + size - 1) // size if size else 0}
