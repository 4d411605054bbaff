"""Test helpers for real V2Ray traffic on loopback: an HTTP server to download from, and V2Ray clients.

    with HttpServer() as web, V2RayClient("vmess", "127.0.0.1", 10086, uuid) as client:
        body = fetch(client.socks_port, web.url(1_000_000), timeout=5)

A `V2RayClient` is a second real `v2ray` process with a SOCKS inbound on a free 127.0.0.1 port and one
VMess or VLESS outbound; `client_from_link()` builds one from a share link exactly as a subscriber's app
would read it. `fetch()` downloads through its SOCKS port. Every process started here is killed on exit.
Used by the agent's V2Ray driver tests, the end-to-end tests and the benchmarks. Traffic through a tunnel
goes to the internet host (tests/world.py: the `internet` fixture), never to loopback.
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

V2RAY_ENV = "VPNFLEET_V2RAY"
V2RAY = os.environ.get(V2RAY_ENV) or shutil.which("v2ray") or "v2ray"
CHUNK = 65536


def v2ray_binary() -> str | None:
    """The v2ray binary the tests use ($VPNFLEET_V2RAY, else `v2ray` on PATH); None if there is none."""
    return shutil.which(V2RAY)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    """Return once host:port accepts a TCP connection; TimeoutError after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:g} s")


# -- the far end: an HTTP server that serves N bytes --------------------------------------------------------

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
        chunk = b"x" * CHUNK
        while size > 0:
            self.wfile.write(chunk[: min(size, len(chunk))])
            size -= min(size, len(chunk))

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output clean
        pass


class HttpServer:
    """A threaded HTTP server serving /bytes/N (default: a free 127.0.0.1 port); use as a context manager.

    Through a subscriber's tunnel loopback is out of reach (the nodes' egress policy): tunnels download from
    the internet host of tests/world.py, which runs one of these (`python -m tests.v2ray_lab serve HOST PORT`).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.server = http.server.ThreadingHTTPServer((host, port), _BytesHandler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="http-bytes", daemon=True)

    def url(self, size: int) -> str:
        return f"http://{self.host}:{self.port}/bytes/{size}"

    def __enter__(self) -> HttpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


def fetch(socks_port: int, url: str, timeout: float = 10.0) -> bytes:
    """GET url through the SOCKS5 proxy on 127.0.0.1:socks_port; raises on any failure."""
    # trust_env=False: a proxy or NO_PROXY in the test's environment must not reroute the request.
    with httpx.Client(proxy=f"socks5://127.0.0.1:{socks_port}", timeout=timeout, trust_env=False) as client:
        response = client.get(url)
        response.raise_for_status()
        return response.content


def can_fetch(socks_port: int, url: str, timeout: float = 3.0) -> bool:
    """Did a fetch through the proxy return the whole body? A user V2Ray refuses fails here: over VMess the
    connection hangs until the timeout (anti-probing), over VLESS the reply is empty."""
    try:
        body = fetch(socks_port, url, timeout)
    except (httpx.HTTPError, OSError):
        return False
    size = url.rsplit("/", 1)[-1]
    return not size.isdigit() or len(body) == int(size)


# -- the near end: a V2Ray client --------------------------------------------------------------------------

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

    def __init__(self, protocol: str, address: str, port: int, uuid: str, start_timeout: float = 10.0) -> None:
        self.protocol, self.address, self.port, self.uuid = protocol, address, port, uuid
        self.start_timeout = start_timeout
        self.socks_port = free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="v2ray-client-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> V2RayClient:
        config = self._dir / "config.json"
        config.write_text(json.dumps(client_config(self.protocol, self.address, self.port, self.uuid,
                                                   self.socks_port)))
        with open(self._dir / "client.log", "ab") as log_file:
            # Own session: a Ctrl-C meant for pytest does not hit it first; __exit__ kills it either way.
            self.proc = subprocess.Popen([V2RAY, "-config", str(config)], stdin=subprocess.DEVNULL,
                                         stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_port(self.socks_port, self.start_timeout)
        except BaseException:
            output = self.log()
            self.__exit__()
            raise RuntimeError(f"the V2Ray client did not open its SOCKS port: {output[-500:]}") from None
        return self

    def log(self) -> str:
        """What the client process printed so far."""
        try:
            return (self._dir / "client.log").read_text(errors="replace")
        except OSError:
            return ""

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(5)
            self.proc = None
        shutil.rmtree(self._dir, ignore_errors=True)


# -- share links -------------------------------------------------------------------------------------------

def parse_link(link: str) -> tuple[str, str, int, str]:
    """(protocol, address, port, uuid) of a `vmess://` (v2rayN JSON) or `vless://` share link.

    vmess:// is base64 (standard or URL-safe, padding optional) of {"v":"2","ps","add","port","id","aid",...};
    vless:// is `vless://UUID@host:port?encryption=none&type=tcp#name`, IPv6 hosts in brackets.
    """
    if link.startswith("vmess://"):
        raw = link[len("vmess://"):].strip()
        padded = raw + "=" * (-len(raw) % 4)
        decoded = base64.urlsafe_b64decode(padded) if "-" in raw or "_" in raw else base64.b64decode(padded)
        data = json.loads(decoded)
        return "vmess", str(data["add"]).strip("[]"), int(data["port"]), data["id"]
    if link.startswith("vless://"):
        url = urllib.parse.urlsplit(link)
        return "vless", url.hostname or "", int(url.port or 0), urllib.parse.unquote(url.username or "")
    raise ValueError(f"not a vmess:// or vless:// link: {link[:16]}...")


def client_from_link(link: str) -> V2RayClient:
    """A V2RayClient for a subscriber's share link (use it as a context manager)."""
    return V2RayClient(*parse_link(link))


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] != ["serve"] or len(sys.argv) != 4:
        raise SystemExit("usage: python -m tests.v2ray_lab serve HOST PORT")
    with HttpServer(sys.argv[2], int(sys.argv[3])) as web:
        web._thread.join()
