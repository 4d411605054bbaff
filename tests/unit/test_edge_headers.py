"""Security headers on every response; a route's own value wins; HSTS only under TLS."""

from __future__ import annotations

from typing import Any

from controller.edge.headers import API_CSP, DOCS_CSP, PANEL_CSP, SecurityHeadersMiddleware


async def headers_for(path: str, hsts: bool, own: list[tuple[bytes, bytes]] | None = None) -> dict[str, str]:
    async def app(scope, receive, send) -> None:  # noqa: ANN001
        await send({"type": "http.response.start", "status": 200, "headers": list(own or [])})
        await send({"type": "http.response.body", "body": b""})

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await SecurityHeadersMiddleware(app, hsts=hsts)({"type": "http", "path": path, "headers": []}, None, send)
    return {k.decode(): v.decode() for k, v in sent[0]["headers"]}


async def test_headers() -> None:
    api = await headers_for("/api/v1/nodes", hsts=False)
    assert api["x-content-type-options"] == "nosniff" and api["referrer-policy"] == "no-referrer"
    assert api["content-security-policy"] == API_CSP and "strict-transport-security" not in api
    docs = await headers_for("/docs/static/swagger-ui.css", hsts=True)
    assert docs["content-security-policy"] == DOCS_CSP and "'unsafe-inline'" not in DOCS_CSP
    assert docs["strict-transport-security"].startswith("max-age=")
    panel = await headers_for("/ui/assets/app-X.js", hsts=False)
    assert panel["content-security-policy"] == PANEL_CSP
    assert "'unsafe-inline'" not in PANEL_CSP and "'unsafe-eval'" not in PANEL_CSP and "connect-src 'self'" in PANEL_CSP
    own = await headers_for("/x", hsts=False, own=[(b"content-security-policy", b"sandbox")])
    assert own["content-security-policy"] == "sandbox"
