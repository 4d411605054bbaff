"""Request bodies: bounded in size, and checked as JSON (depth, NUL characters) before anything parses them.

The whole body is read here (at most ``max_bytes`` of it), checked, and handed to the route as one message, so
a route, FastAPI's own parser or the audit log never see a body the limits refuse.
"""

from __future__ import annotations

import itertools
import re
from typing import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controller.edge.errors import error_response
from controller.errors import BadRequest, DomainError, PayloadTooLarge

#: a JSON string token (escapes included): brackets inside strings do not nest. Every quote starts a match: an
#: unterminated string (or one ending in a lone backslash) runs to the end of the body, which the parser refuses
#: anyway. A pattern that could fail there would rescan the rest of the body from every quote (quadratic).
_STRING = re.compile(rb'"[^"\\]*+(?:\\(?:.|\Z)[^"\\]*+)*+(?:"|\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
#: the escape \u0000 not itself escaped (an even number of backslashes, possibly none, before its own)
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_DELTA = [0] * 256
_DELTA[ord("[")] = _DELTA[ord("{")] = 1
_DELTA[ord("]")] = _DELTA[ord("}")] = -1

#: what the audit log reads to record a refused body as its size and the reason, never its text
REFUSED_KEY = "body_refused"


def json_depth(body: bytes) -> int:
    """How deep arrays and objects nest in ``body`` (strings skipped); C-speed regex and translate, no parse."""
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    return max(itertools.accumulate(map(_DELTA.__getitem__, brackets)), default=0)


def has_nul_text(body: bytes) -> bool:
    """A NUL character in the body, raw or as the JSON escape \\u0000 (no field accepts one, and PostgreSQL's
    text and JSON columns cannot store it)."""
    return b"\x00" in body or (b"u0000" in body and _NUL_ESCAPE.search(body) is not None)


def check_json(body: bytes, max_depth: int) -> str | None:
    """Why this body is refused before parsing, or None. Checked whatever the Content-Type: every route reads
    its body as JSON."""
    if has_nul_text(body):
        return "request body holds a NUL character (\\u0000), which no field accepts"
    # fewer opening brackets than the limit cannot nest past it: most bodies skip the string scan
    if body.count(b"[") + body.count(b"{") > max_depth and json_depth(body) > max_depth:
        return f"request body is nested too deeply (more than {max_depth} levels)"
    return None


class BodyLimitMiddleware:
    """413 for a body over the limit (on Content-Length before reading, or while a chunked body streams in),
    400 for JSON nested deeper than ``max_json_depth`` or holding NUL characters.

    ``overrides``: (path prefix, max bytes) pairs for routes that need a larger body; the first match wins.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, max_json_depth: int,
                 overrides: Sequence[tuple[str, int]] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_json_depth = max_json_depth
        self.overrides = tuple(overrides)

    def limit_for(self, path: str) -> int:
        return next((n for prefix, n in self.overrides if path.startswith(prefix)), self.max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        if not chunked and (length is None or length.strip() in (b"", b"0")):
            return await self.app(scope, receive, send)  # no body: nothing to buffer (SSE GETs pass untouched)
        limit = self.limit_for(scope["path"])
        if length is not None and length.strip().isdigit() and int(length) > limit:
            return await self._refuse(scope, receive, send, int(length), PayloadTooLarge(
                f"request body is {int(length)} bytes; this route takes at most {limit}", {"max_bytes": limit}))
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away mid-body: nothing to answer
            body.extend(message.get("body", b""))
            if len(body) > limit:
                return await self._refuse(scope, receive, send, len(body), PayloadTooLarge(
                    f"request body is over {limit} bytes, the most this route takes", {"max_bytes": limit}))
            if not message.get("more_body", False):
                break
        reason = check_json(bytes(body), self.max_json_depth)
        if reason is not None:
            return await self._refuse(scope, receive, send, len(body), BadRequest(reason))
        await self.app(scope, _replay(bytes(body), receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, size: int, exc: DomainError) -> None:
        scope.setdefault("state", {})[REFUSED_KEY] = {"size": size, "error": exc.message}
        # a 413 leaves the rest of the body unread: the connection is closed rather than drained
        headers = {"Connection": "close"} if exc.status == 413 else None
        await error_response(exc, scope, headers=headers)(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body as one message, then whatever the connection says next (e.g. http.disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay

