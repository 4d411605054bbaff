"""The body limit and the JSON checks, as ASGI middleware around a recording app (no server needed)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.edge.guards import has_nul
from controller.edge.limits import REFUSED_KEY, BodyLimitMiddleware, check_json, has_nul_text, json_depth


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab\x00'),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                               st.text(alphabet='[]{}"\\k', max_size=3), inner, max_size=3), max_leaves=30)


@settings(max_examples=300)
@given(value=json_values)
def test_the_scan_agrees_with_a_parser(value: Any) -> None:
    body = json.dumps(value).encode()
    assert json_depth(body) == depth_of(value)
    assert has_nul_text(body) == has_nul(value)


def test_escapes_and_pathological_bodies() -> None:
    assert not has_nul_text(b'{"a": "x\\\\u0000"}')  # an escaped backslash, then the text u0000
    assert has_nul_text(b'{"a": "x\\\\\\u0000"}') and has_nul_text(b'{"a": "\x00"}')
    assert json_depth(b'["\\"]]]"]') == 1
    assert check_json(b"[" * 100_000, 32) is not None
    # every quote starting a string that never ends (or ends in a lone backslash) must not go quadratic
    for body in (b'"\\' * 500_000, b'"' * 1_000_000, b'"\\\\' * 300_000 + b"["):
        assert check_json(body, 32) is None  # (the parser refuses these; the scan just must be fast)


class Recorder:
    def __init__(self) -> None:
        self.body: bytes | None = None

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        message = await receive()
        self.body = message["body"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def call(mw: BodyLimitMiddleware, chunks: list[bytes], headers: list[tuple[bytes, bytes]],
               path: str = "/api/v1/clients") -> tuple[int, bytes, dict[str, Any], int]:
    """(status, response body, scope state, chunks the middleware pulled)."""
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        if pulled > len(chunks):
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunks[pulled - 1], "more_body": pulled < len(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": headers, "state": {}}
    await mw(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]), scope["state"], pulled


async def test_content_length_over_the_limit_is_refused_before_reading() -> None:
    app = Recorder()
    mw = BodyLimitMiddleware(app, max_bytes=1000, max_json_depth=8)
    status, body, state, pulled = await call(mw, [b"x" * 2000], [(b"content-length", b"2000")])
    assert status == 413 and pulled == 0 and app.body is None
    assert json.loads(body)["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert state[REFUSED_KEY]["size"] == 2000


async def test_a_chunked_body_is_cut_off_at_the_limit() -> None:
    app = Recorder()
    mw = BodyLimitMiddleware(app, max_bytes=1000, max_json_depth=8)
    status, _, _, pulled = await call(mw, [b" " * 300] * 100, [(b"transfer-encoding", b"chunked")])
    assert status == 413 and pulled == 4 and app.body is None  # 4 x 300 > 1000: the other 96 never read


async def test_a_good_body_reaches_the_app_whole_and_overrides_apply() -> None:
    app = Recorder()
    mw = BodyLimitMiddleware(app, max_bytes=10, max_json_depth=8, overrides=[("/big/", 100)])
    status, _, _, _ = await call(mw, [b'{"a":', b' [1, 2]}'], [(b"transfer-encoding", b"chunked")], "/big/x")
    assert status == 200 and app.body == b'{"a": [1, 2]}'
    assert (await call(mw, [b'{"a": [1, 2]}'], [(b"content-length", b"13")]))[0] == 413


@pytest.mark.parametrize("raw, reason", [(b"[" * 9 + b"]" * 9, "nested too deeply"),
                                          (b'{"a": "\\u0000"}', "NUL"), (b'{"a": "\x00"}', "NUL")])
async def test_json_refusals(raw: bytes, reason: str) -> None:
    app = Recorder()
    mw = BodyLimitMiddleware(app, max_bytes=1000, max_json_depth=8)
    status, body, state, _ = await call(mw, [raw], [(b"content-length", str(len(raw)).encode())])
    assert status == 400 and reason in json.loads(body)["error"]["message"] and app.body is None
    assert state[REFUSED_KEY] == {"size": len(raw), "error": json.loads(body)["error"]["message"]}
    # seed 000's API keeps its {"error": "message"} shape
    _, compat, _, _ = await call(mw, [raw], [(b"content-length", str(len(raw)).encode())], "/api/v2ray")
    assert isinstance(json.loads(compat)["error"], str)


async def test_no_body_passes_untouched() -> None:
    app = Recorder()
    mw = BodyLimitMiddleware(app, max_bytes=1, max_json_depth=1)
    status, _, _, pulled = await call(mw, [b""], [])
    assert status == 200 and pulled == 1  # read by the app itself, not buffered
