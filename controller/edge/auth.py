"""Authentication: an API key on every path but the public ones."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from controller.auth import ApiKeyStore
from controller.edge.errors import error_response
from controller.errors import Unauthorized

#: paths anyone may call (DESIGN.md): health, the API description, and token-authenticated downloads
PUBLIC_PATHS = ("/api/v1/health", "/openapi.json")
PUBLIC_PREFIXES = ("/docs", "/sub/", "/agent/package/")


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
