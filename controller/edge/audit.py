"""The audit log: every mutating call, after it finished, in the operations log (seed 004's shape)."""

from __future__ import annotations

import json as jsonlib
import logging
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controller.edge.errors import loggable_path
from controller.edge.guards import has_nul
from controller.edge.limits import REFUSED_KEY, check_json
from controller.edge.request_id import request_id
from controller.services.operations import OperationLog

log = logging.getLogger("vpnfleet.http")

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
#: the most of a body the audit log keeps (a larger one is recorded as its size)
MAX_AUDIT_BODY = 64 * 1024
#: nesting the audit log parses; deeper is recorded as its size (the body limit refuses past limits.max_json_depth)
MAX_AUDIT_DEPTH = 64


def audit_payload(body: bytes, size: int, refused: dict[str, Any] | None = None) -> Any:
    """What the operations log records of a request body: the parsed JSON (redacted later, by OperationLog), or,
    for a body refused at the edge, malformed, too deep or too large, only its size and why, never its text
    (a malformed body is where a secret would otherwise leak verbatim)."""
    if refused is not None:
        return {"_size": refused["size"], "_error": refused["error"]}
    if size == 0:
        return None
    if size > len(body):
        return {"_size": size, "_error": f"not recorded: over {MAX_AUDIT_BODY} bytes"}
    reason = check_json(body, MAX_AUDIT_DEPTH)
    if reason is not None:
        return {"_size": size, "_error": reason}
    try:
        payload = jsonlib.loads(body)
    except ValueError as exc:
        msg = exc.msg if isinstance(exc, jsonlib.JSONDecodeError) else "not UTF-8"
        return {"_size": size, "_error": f"not valid JSON: {msg}"}
    except RecursionError:
        return {"_size": size, "_error": "nested too deeply"}
    if has_nul(payload):  # PostgreSQL's JSON cannot hold it; the body limit refuses it before this
        return {"_size": size, "_error": "a NUL character"}
    return payload


class AuditMiddleware:
    """Records every mutating call (after it finished) in the operations log."""

    def __init__(self, app: ASGIApp, operations: OperationLog) -> None:
        self.app = app
        self.operations = operations

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in MUTATING or "principal" not in scope.get("state", {}):
            return await self.app(scope, receive, send)
        body = bytearray()
        size = 0
        status = 500
        error_body_bytes = bytearray()
        recorded = False

        def payload() -> Any:
            return audit_payload(bytes(body), size, scope["state"].get(REFUSED_KEY))

        async def receive_and_keep() -> Message:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                size += len(chunk)
                if len(body) < MAX_AUDIT_BODY:
                    body.extend(chunk[: MAX_AUDIT_BODY - len(body)])
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
                    await self._record(scope, payload(), status, bytes(error_body_bytes))
            await send(message)

        try:
            await self.app(scope, receive_and_keep, send_and_note)
        finally:
            if not recorded:  # the handler failed before answering, or the client went away
                await self._record(scope, payload(), status, bytes(error_body_bytes))

    async def _record(self, scope: Scope, payload: Any, status: int, err: bytes) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or loggable_path(scope["path"])  # no route: a 404 or 405
        params = scope.get("path_params") or {}
        target_id = _canonical_id(params.get("id") or params.get("uuid"))
        parts = [p for p in template.split("/") if p and not p.startswith("{")]
        # "/api/v1/nodes/{id}/start" -> target "node", action "POST /api/v1/nodes/{id}/start";
        # "/api/v1/auth/api-keys/{id}" -> target "api-key"
        resource = parts[2] if len(parts) > 2 else (parts[-1] if parts else "")
        if resource == "auth" and len(parts) > 3:
            resource = parts[3]
        target_type = resource.rstrip("s") or None
        message = None
        if status >= 400:
            try:
                e = jsonlib.loads(err).get("error")
                message = e.get("message") if isinstance(e, dict) else str(e)
            except (ValueError, AttributeError):
                message = err[:500].decode("utf-8", "replace") or None
            message = message.replace("\x00", "") if message else message  # PostgreSQL's text cannot hold it
        if target_id is None and status < 400 and isinstance(scope["state"].get("created_id"), str):
            target_id = scope["state"]["created_id"]
        # seed 004: a subscriber's operations are found by client_id
        client_id = _canonical_id(params.get("client_id")) or (target_id if resource == "clients" else None)
        try:
            await self.operations.record(
                actor=scope["state"]["principal"].actor, action=f"{scope['method']} {template}",
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
