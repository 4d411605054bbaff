"""Input guards: refuse what no route takes before any route runs."""

from __future__ import annotations

import urllib.parse
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from controller.edge.errors import error_response
from controller.errors import BadRequest


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


def has_nul(data: Any) -> bool:
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
