"""Security headers on every HTTP response (a route's own value of a header wins)."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: the Swagger page: its bundle, stylesheet and init script are files under /docs (no inline script or style);
#: it fetches /openapi.json and calls the API from the same origin; the bundle draws its icons as data: URLs
DOCS_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
#: the operator panel (/ui/): its own script and stylesheet files only; it calls this API (and its SSE streams)
#: from the same origin; QR codes and charts are drawn in the page (SVG, canvas), images are data: at most
PANEL_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
             "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
PANEL_PREFIX = "/ui"
#: everything else is JSON, SSE or a download: nothing in it may run, load or be framed
API_CSP = "default-src 'none'; frame-ancestors 'none'"
DOCS_PREFIX = "/docs"
#: one year; no includeSubDomains or preload: the controller cannot speak for the operator's other names
HSTS = "max-age=31536000"


class SecurityHeadersMiddleware:
    """X-Content-Type-Options, Referrer-Policy, a Content-Security-Policy (strict on /docs and /ui, deny-all
    for the API) and, when the API is served over TLS, Strict-Transport-Security."""

    def __init__(self, app: ASGIApp, hsts: bool = False) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        csp = DOCS_CSP if path.startswith(DOCS_PREFIX) else PANEL_CSP if path.startswith(PANEL_PREFIX) else API_CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                headers.setdefault("Content-Security-Policy", csp)
                if self.hsts:
                    headers.setdefault("Strict-Transport-Security", HSTS)
            await send(message)

        await self.app(scope, receive, send_with_headers)
