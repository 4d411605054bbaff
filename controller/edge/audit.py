"""The audit log: every mutating call, after it finished, in the operations log (seed 004's shape)."""

from __future__ import annotations

import json as jsonlib
import logging
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controller.edge.guards import has_nul
from controller.edge.request_id import request_id
from controller.services.operations import OperationLog

log = logging.getLogger("vpnfleet.http")

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
MAX_AUDIT_BODY = 64 * 1024


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
        if has_nul(payload):  # refused by read_body; PostgreSQL's JSON cannot hold it either
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
