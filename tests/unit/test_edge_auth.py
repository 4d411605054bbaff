"""Failed-key throttling: the lockout window, bounded memory, sources, and the middleware's answers."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from controller.auth import Principal
from controller.permissions import ALL, Role
from controller.edge.auth import AuthMiddleware, FailureThrottle, source_of


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_n_failures_within_the_window_lock_out_for_the_window() -> None:
    clock = Clock()
    t = FailureThrottle(limit=3, window=60, clock=clock)
    assert [t.failed("a"), t.failed("a")] == [False, False] and t.retry_after("a") is None
    assert t.failed("a") is True
    assert t.retry_after("a") == 60 and t.retry_after("b") is None
    clock.now += 59.5
    assert t.retry_after("a") == 1
    clock.now += 1
    assert t.retry_after("a") is None
    # failures spread wider than the window never lock out
    for _ in range(10):
        clock.now += 31
        assert t.failed("c") is False


def test_memory_is_bounded() -> None:
    t = FailureThrottle(limit=2, window=60, max_tracked=100, clock=Clock())
    for i in range(10_000):
        t.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(t) <= 200


def test_sources() -> None:
    assert source_of({"client": ("127.0.0.2", 5)}) == "127.0.0.2"
    assert source_of({"client": ("2001:db8:1:2:3:4:5:6", 5)}) == "2001:db8:1:2::/64"
    assert source_of({"client": ("::ffff:192.0.2.1", 5)}) == "192.0.2.1"
    assert source_of({}) == "unknown"


class Keys:
    """The directory's part the middleware uses: one good key, of an admin."""

    def authenticate_key(self, presented: str) -> str | None:
        return "entry" if presented == "good" else None

    def key_principal(self, entry: str, source: str | None, path: str) -> Principal:
        return Principal(1, "admin", Role.ADMIN, ALL, key_id=1, key_name="admin")


async def ok_app(scope, receive, send) -> None:  # noqa: ANN001
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def call(mw: AuthMiddleware, key: str | None, client: str = "192.0.2.7",
               path: str = "/api/v1/nodes") -> tuple[int, dict[bytes, bytes], Any]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    headers = [(b"x-api-key", key.encode())] if key is not None else []
    await mw({"type": "http", "method": "GET", "path": path, "headers": headers, "client": (client, 1),
              "state": {}}, receive, send)
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return sent[0]["status"], dict(sent[0]["headers"]), json.loads(body) if body != b"ok" else body


async def test_the_middleware_throttles_and_logs_without_the_key(caplog: pytest.LogCaptureFixture) -> None:
    mw = AuthMiddleware(ok_app, Keys(), failures_per_window=5, failure_window=30)  # type: ignore[arg-type]
    caplog.set_level(logging.WARNING, "vpnfleet.auth")
    for _ in range(3):
        assert (await call(mw, None))[0] == 401  # no key at all guesses nothing: not counted
    statuses = [(await call(mw, f"wrong-{i}-hunter2"))[0] for i in range(8)]
    assert statuses == [401] * 5 + [429] * 3
    status, headers, body = await call(mw, "good")  # locked out: the key is not even looked at
    assert status == 429 and 0 < int(headers[b"retry-after"]) <= 30
    assert body["error"]["code"] == "TOO_MANY_REQUESTS" and body["error"]["details"]["retry_after"] >= 1
    assert (await call(mw, "good", client="192.0.2.8"))[0] == 200  # another address
    assert (await call(mw, "x", path="/api/v1/health"))[0] == 200  # public paths are answered while locked out
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 5 and all("192.0.2.7" in line and "fingerprint" in line for line in lines)
    assert not any("hunter2" in line or "wrong-" in line for line in lines)
    assert "locked out" in lines[-1]


async def test_keys_on_public_paths_are_checked_and_their_failures_count() -> None:
    """/api/v1/health says more to a key holder: guessing keys there is throttled like anywhere else."""
    seen: list[bool] = []

    async def public_app(scope, receive, send) -> None:  # noqa: ANN001
        seen.append("principal" in scope["state"])
        await ok_app(scope, receive, send)

    mw = AuthMiddleware(public_app, Keys(), failures_per_window=3, failure_window=30)  # type: ignore[arg-type]
    assert (await call(mw, "good", path="/api/v1/health"))[0] == 200 and seen == [True]
    for i in range(3):
        assert (await call(mw, f"guess-{i}", path="/api/v1/health"))[0] == 200  # public: always answered
    assert seen == [True, False, False, False]
    assert (await call(mw, "good"))[0] == 429  # the guesses locked the address out of the API
    assert (await call(mw, "good", path="/api/v1/health"))[0] == 200 and seen[-1] is False  # key not looked at
