"""Slowloris against the real controller (issue 10, item 3): hundreds of half-open connections (sending half a
request head, or over TLS not even a handshake) while /api/v1/health keeps answering; they are dropped after
limits.header_timeout; the controller's memory stays bounded and its log quiet. Prints the RSS figures."""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.controller_process import ControllerProcess, wait_for

HALF_OPEN = 620
HEADER_TIMEOUT = 10
#: what the controller may grow by while holding HALF_OPEN half-open connections
RSS_GROWTH_BOUND_MB = 200


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(params=[True, False], ids=["https", "http"])
def ctl(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ControllerProcess]:
    process = ControllerProcess(tmp_path / "data", tls=request.param,
                                env={"VPNFLEET_HEADER_TIMEOUT": str(HEADER_TIMEOUT), "VPNFLEET_IDLE_TIMEOUT": "2"})
    try:
        yield process.start()
    finally:
        process.cleanup()


def half_open(ctl: ControllerProcess, count: int) -> list[socket.socket]:
    """count connections, each stuck: over https most never start the handshake (cheap to make) and one in five
    sends part of a head after it; over http each sends part of a head."""
    context = ssl.create_default_context(cafile=str(ctl.ca_file)) if ctl.tls else None
    socks: list[socket.socket] = []
    for i in range(count):
        raw = socket.create_connection(("127.0.0.1", ctl.http_port), timeout=10)
        if context is not None and i % 5:
            socks.append(raw)  # TCP only: the TLS handshake never starts
            continue
        sock = context.wrap_socket(raw, server_hostname="127.0.0.1") if context is not None else raw
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # never finished
        socks.append(sock)
    return socks


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.01)
    try:
        return sock.recv(1) == b""
    except (socket.timeout, ssl.SSLWantReadError):
        return False
    except (ConnectionError, ssl.SSLError, OSError):
        return True


def test_half_open_connections_do_not_starve_health_and_are_dropped(ctl: ControllerProcess) -> None:
    assert ctl.proc is not None
    before = rss_mb(ctl.proc.pid)
    log_before = len(ctl.log())
    started = time.monotonic()
    socks = half_open(ctl, HALF_OPEN)
    try:
        held = rss_mb(ctl.proc.pid)
        # /health answers promptly on fresh connections all the while
        with ctl.http_client(timeout=5.0) as client:
            for _ in range(20):
                assert client.get("/api/v1/health").status_code == 200
        assert time.monotonic() - started < HEADER_TIMEOUT, "too slow to test the timeout: raise HEADER_TIMEOUT"
        # every half-open connection is dropped by the server once its head (or handshake) is overdue
        wait_for(lambda: all(closed_by_server(s) for s in socks), HEADER_TIMEOUT + 10, interval=0.5,
                 message="the server dropping every half-open connection")
        assert time.monotonic() - started >= HEADER_TIMEOUT - 0.5  # not before its time
        after = rss_mb(ctl.proc.pid)
    finally:
        for s in socks:
            s.close()
    scheme = "https" if ctl.tls else "http"
    print(f"\n[slowloris {scheme}] controller RSS: {before:.1f} MB before, {held:.1f} MB holding {HALF_OPEN} "
          f"half-open connections, {after:.1f} MB after they were dropped")
    assert held - before < RSS_GROWTH_BOUND_MB
    assert ctl.get("/api/v1/health").status_code == 200
    # dropping them costs no traceback and no line per connection
    new_log = ctl.log()[log_before:]
    assert "Traceback" not in new_log and len(new_log) < 20_000, new_log[-3000:]


def test_an_idle_keep_alive_connection_is_closed(ctl: ControllerProcess) -> None:
    context = ssl.create_default_context(cafile=str(ctl.ca_file)) if ctl.tls else None
    raw = socket.create_connection(("127.0.0.1", ctl.http_port), timeout=10)
    sock = context.wrap_socket(raw, server_hostname="127.0.0.1") if context is not None else raw
    try:
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        opened = time.monotonic()
        wait_for(lambda: closed_by_server(sock), 10, interval=0.2, message="the idle connection closed")
        assert 1.0 < time.monotonic() - opened < 8  # idle_timeout 2 s
    finally:
        sock.close()
