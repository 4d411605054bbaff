"""The request edge of a real controller: body limits (a 300 MB upload, RSS measured), JSON depth and NUL
characters, failed-key throttling (1,000 bad keys), security headers."""

from __future__ import annotations

import json
import select
import socket
import ssl
import time
from pathlib import Path
from typing import Iterator

import httpx
import psutil
import pytest

from tests.controller_process import ControllerProcess

MIB = 1024 * 1024
JSON = {"Content-Type": "application/json"}
#: where the guessing client comes from: another loopback address, so the test's own client (127.0.0.1,
#: the admin key) is "a good key from another address"
ATTACKER = "127.0.0.2"


@pytest.fixture(scope="module")
def ctl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProcess]:
    c = ControllerProcess(tmp_path_factory.mktemp("edge") / "data")
    try:
        yield c.start()
    finally:
        c.cleanup()


def _rss(ctl: ControllerProcess) -> int:
    assert ctl.proc is not None
    return psutil.Process(ctl.proc.pid).memory_info().rss


def _raw_connection(ctl: ControllerProcess) -> socket.socket:
    """A TLS socket to the controller, for requests httpx will not send (a body that never ends)."""
    raw = socket.create_connection(("127.0.0.1", ctl.http_port), timeout=30)
    if not ctl.tls:
        return raw
    context = ssl.create_default_context(cafile=str(ctl.ca_file))
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def _upload(ctl: ControllerProcess, head: bytes, chunks: Iterator[bytes]) -> tuple[bytes, int]:
    """Send ``head`` then ``chunks`` until the controller answers or hangs up; (its response, bytes sent)."""
    conn = _raw_connection(ctl)
    sent = 0
    answer = b""
    try:
        conn.sendall(head)
        for chunk in chunks:
            if _answered(conn):
                break
            try:
                conn.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                break
            sent += len(chunk)
        conn.settimeout(10)
        answer = getattr(conn, "early", b"")
        try:
            while b"\r\n\r\n" not in answer or len(answer) < answer.index(b"\r\n\r\n") + 4 + 50:
                data = conn.recv(65536)
                if not data:
                    break
                answer += data
        except (ConnectionResetError, ssl.SSLError, socket.timeout):
            pass
    finally:
        conn.close()
    return answer, sent


def _answered(conn: socket.socket) -> bool:
    """Has the controller sent response bytes yet? (A readable TLS socket may only hold a session ticket.)"""
    if not select.select([conn], [], [], 0)[0]:
        return False
    conn.setblocking(False)
    try:
        data = conn.recv(65536)
    except (ssl.SSLWantReadError, BlockingIOError):
        return False
    except (ConnectionResetError, ssl.SSLError):
        return True
    finally:
        conn.setblocking(True)
    conn.early = getattr(conn, "early", b"") + data  # type: ignore[attr-defined]
    return True


def _key(ctl: ControllerProcess) -> str:
    return (ctl.data_dir / "admin.key").read_text().strip()


def test_a_300_mb_body_is_refused_without_growing_the_controller(ctl: ControllerProcess) -> None:
    ctl.api.get("/api/v1/clients")  # warm: every route and the database pool loaded before measuring
    before = _rss(ctl)
    chunk = b"x" * MIB

    def chunked(total_mib: int) -> Iterator[bytes]:
        for _ in range(total_mib):
            yield b"%x\r\n%s\r\n" % (len(chunk), chunk)
        yield b"0\r\n\r\n"

    head = (f"POST /api/v1/clients HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {_key(ctl)}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    answer, sent = _upload(ctl, head, chunked(300))
    peak = _rss(ctl)
    print(f"\nchunked 300 MB POST: controller RSS {before / MIB:.1f} MiB before, {peak / MIB:.1f} MiB after; "
          f"the client got {sent / MIB:.1f} MiB out before the 413")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"PAYLOAD_TOO_LARGE" in answer
    assert sent < 300 * MIB  # refused while streaming, not after reading it all
    assert peak - before < 30 * MIB

    # declared up front: refused before a byte of the body is read
    head = (f"POST /api/v1/clients HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {_key(ctl)}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {300 * MIB}\r\n\r\n").encode()
    answer, sent = _upload(ctl, head, iter([chunk] * 300))
    after = _rss(ctl)
    print(f"Content-Length 300 MB POST: RSS {after / MIB:.1f} MiB; {sent / MIB:.1f} MiB sent before the 413")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert after - before < 30 * MIB
    # the limit is 1 MiB: just under it is a body like any other (422: not a valid subscriber)
    body = json.dumps({"username": "big", "days": 1, "note": "n" * (MIB - 100)}).encode()
    assert len(body) < MIB
    r = ctl.api.post("/api/v1/clients", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert ctl.api.post("/api/v1/clients", content=body + b" " * 200,
                        headers={"Content-Type": "application/json"}).status_code == 413
    assert ctl.get("/api/v1/health").status_code == 200
    ops = ctl.api.get("/api/v1/operations", params={"result": "fail"}).json()["items"]
    refused = [o for o in ops if o["status_code"] == 413]
    assert refused and all(set(o["payload"]) == {"_size", "_error"} for o in refused), refused


def test_deep_json_and_nul_characters_are_refused_before_any_route_parses_them(ctl: ControllerProcess) -> None:
    for depth in (33, 500, 900, 100_000):
        body = b'{"username": "deep", "days": 1, "x": ' + b"[" * depth + b"]" * depth + b"}"
        r = ctl.api.post("/api/v1/clients", content=body, headers=JSON)
        assert r.status_code == 400 and "nested too deeply" in r.json()["error"]["message"], r.text
    # 32 levels is allowed: then the route's own validation speaks (422: 'x' is not a field)
    ok = b'{"username": "deep", "days": 1, "x": ' + b"[" * 31 + b"]" * 31 + b"}"
    assert ctl.api.post("/api/v1/clients", content=ok, headers=JSON).status_code == 422
    # brackets inside strings do not count
    assert ctl.api.post("/api/v1/clients", json={"username": "brackets", "days": 1,
                                                 "note": "[" * 900}).status_code == 201
    nul = b'{"username": "nul", "days": 1, "note": "a\\u0000b"}'
    for method, path in [("POST", "/api/v1/clients"), ("POST", "/api/v1/nodes"),
                         ("PUT", "/api/v1/wireguard/servers/1"), ("POST", "/api/v1/ipv6/pools")]:
        r = ctl.api.request(method, path, content=nul, headers=JSON)
        assert r.status_code == 400 and "NUL" in r.json()["error"]["message"], (path, r.text)
    # an escaped backslash before u0000 is not a NUL
    assert ctl.api.post("/api/v1/clients", json={"username": "slash", "days": 1,
                                                 "note": "a\\u0000b"}).status_code == 201
    # seed 000's API keeps its own error shape
    r = ctl.api.post("/api/v2ray", content=b'{"region": "a\\u0000"}', headers=JSON)
    assert r.status_code == 400 and isinstance(r.json()["error"], str), r.text
    r = ctl.api.post("/api/v2ray", content=b"[" * 1000, headers=JSON)
    assert r.status_code == 400 and isinstance(r.json()["error"], str), r.text
    # each refusal is in the operations log as its size and the reason, never its text
    ops = ctl.api.get("/api/v1/operations", params={"size": 500}).json()["items"]
    deep = [o for o in ops if o["payload"] and "nested too deeply" in str(o["payload"].get("_error"))]
    assert len(deep) >= 5 and all(set(o["payload"]) == {"_size", "_error"} for o in deep)
    assert any(o["payload"]["_size"] == 100_000 * 2 + 38 for o in deep)


def test_1000_bad_keys_get_401s_then_429s_while_health_and_good_keys_keep_working(
        ctl: ControllerProcess) -> None:
    limit, window = 20, 60  # the defaults (limits.auth_failures_per_window, limits.auth_failure_window)
    transport = httpx.HTTPTransport(local_address=ATTACKER, verify=ctl.verify())
    statuses: list[int] = []
    retry_after: set[str] = set()
    with httpx.Client(base_url=ctl.url, transport=transport, timeout=10) as attacker:
        for i in range(1000):
            r = attacker.get("/api/v1/nodes", headers={"X-API-Key": f"vpf_guess{i:04d}_secretpart"})
            statuses.append(r.status_code)
            if r.status_code == 429:
                retry_after.add(r.headers["Retry-After"])
                assert r.json()["error"]["code"] == "TOO_MANY_REQUESTS"
            if i % 100 == 0:  # the public health check keeps answering, from anywhere
                assert attacker.get("/api/v1/health").status_code == 200
                assert ctl.get("/api/v1/health").status_code == 200
        # locked out means locked out: the real key from the guessing address waits too
        r = attacker.get("/api/v1/nodes", headers={"X-API-Key": _key(ctl)})
        assert r.status_code == 429
    assert statuses[:limit] == [401] * limit
    assert statuses[limit:] == [429] * (1000 - limit)
    assert retry_after and all(0 < int(v) <= window for v in retry_after), retry_after
    # a good key from another address is not throttled
    assert ctl.api.get("/api/v1/nodes").status_code == 200
    # every failed key is logged with its source and a fingerprint, never the key
    time.sleep(0.5)
    log = ctl.log()
    failures = [line for line in log.splitlines() if "invalid API key from" in line]
    assert len(failures) == limit, failures[-3:]
    assert all(ATTACKER in line and "/api/v1/nodes" in line and "fingerprint" in line for line in failures)
    assert "secretpart" not in log and "vpf_guess" not in log
    assert "locked out" in failures[-1]


def test_security_headers(ctl: ControllerProcess) -> None:
    api = ctl.api.get("/api/v1/nodes")
    docs = ctl.get("/docs")
    missing = ctl.get("/api/v1/nope")
    for r in (api, docs, missing):
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Referrer-Policy"] == "no-referrer"
        assert r.headers["Strict-Transport-Security"].startswith("max-age=")  # the test controller speaks TLS
    assert api.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    csp = docs.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp


def test_no_hsts_without_tls(tmp_path: Path) -> None:
    plain = ControllerProcess(tmp_path / "data", tls=False)
    try:
        r = plain.start().get("/api/v1/health")
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert "Strict-Transport-Security" not in r.headers
    finally:
        plain.cleanup()
