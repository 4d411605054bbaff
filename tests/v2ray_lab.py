"""Test helpers for real V2Ray traffic on loopback: an HTTP server to download from, and V2Ray clients.

A `V2RayClient` is a second real `v2ray` process with a SOCKS inbound on a free 127.0.0.1 port and one
VMess or VLESS outbound; `client_from_link()` builds one from a share link exactly as a subscriber's app
would read it. `fetch()` downloads through its SOCKS port.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import httpx

V2RAY = os.environ.get("VPNFLEET_V2RAY") or shutil.which("v2ray") or "v2ray"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s")


class _BytesHandler(http.server.BaseHTTPRequestHandler):
    """GET /bytes/N answers N bytes."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        parts = self.path.strip("/").split("/")
        if len(parts) != 2 or parts[0] != "bytes" or not parts[1].isdigit():
            self.send_error(404)
            return
        size = int(parts[1])
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        chunk = b"x" * 65536
        while size > 0:
            self.wfile.write(chunk[: min(size, len(chunk))])
            size -= min(size, len(chunk))

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class HttpServer:
    """A threaded HTTP server on a free 127.0.0.1 port; use as a context manager."""

    def __init__(self) -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BytesHandler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, size: int) -> str:
        return f"http://127.0.0.1:{self.port}/bytes/{size}"

    def __enter__(self) -> "HttpServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def client_config(protocol: str, address: str, port: int, uuid: str, socks_port: int) -> dict[str, Any]:
    """A V2Ray client config: SOCKS on 127.0.0.1:socks_port, everything out through one VMess/VLESS server."""
    if protocol == "vmess":
        user: dict[str, Any] = {"id": uuid, "alterId": 0, "security": "auto"}
    elif protocol == "vless":
        user = {"id": uuid, "encryption": "none"}
    else:
        raise ValueError(f"unknown protocol {protocol!r}")
    return {
        "log": {"loglevel": "warning"},
        "inbounds": [{"listen": "127.0.0.1", "port": socks_port, "protocol": "socks",
                      "settings": {"udp": False, "auth": "noauth"}}],
        "outbounds": [{"protocol": protocol,
                       "settings": {"vnext": [{"address": address, "port": port, "users": [user]}]}}],
    }


class V2RayClient:
    """A real `v2ray` client process; `socks_port` is where to send traffic. Killed on exit."""

    def __init__(self, protocol: str, address: str, port: int, uuid: str) -> None:
        self.protocol, self.address, self.port, self.uuid = protocol, address, port, uuid
        self.socks_port = free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="v2ray-client-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "V2RayClient":
        config = self._dir / "config.json"
        config.write_text(json.dumps(client_config(self.protocol, self.address, self.port, self.uuid,
                                                   self.socks_port)))
        self.proc = subprocess.Popen([V2RAY, "-config", str(config)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            wait_port(self.socks_port)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        shutil.rmtree(self._dir, ignore_errors=True)


def parse_link(link: str) -> tuple[str, str, int, str]:
    """(protocol, address, port, uuid) of a `vmess://` (v2rayN JSON) or `vless://` share link."""
    if link.startswith("vmess://"):
        raw = link[len("vmess://"):]
        data = json.loads(base64.b64decode(raw + "=" * (-len(raw) % 4)))
        return "vmess", data["add"], int(data["port"]), data["id"]
    if link.startswith("vless://"):
        url = urllib.parse.urlsplit(link)
        return "vless", url.hostname or "", int(url.port or 0), urllib.parse.unquote(url.username or "")
    raise ValueError(f"not a vmess:// or vless:// link: {link[:16]}...")


def client_from_link(link: str) -> V2RayClient:
    return V2RayClient(*parse_link(link))


def fetch(socks_port: int, url: str, timeout: float = 10.0) -> bytes:
    """GET url through the SOCKS5 proxy on 127.0.0.1:socks_port; raises on any failure."""
    with httpx.Client(proxy=f"socks5://127.0.0.1:{socks_port}", timeout=timeout) as client:
        response = client.get(url)
        response.raise_for_status()
        return response.content
