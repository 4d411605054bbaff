"""Test helpers for real V2Ray/Xray traffic on loopback: an HTTP server to download from, and clients.

    with HttpServer() as web, V2RayClient("vmess", "127.0.0.1", 10086, uuid) as client:
        body = fetch(client.socks_port, web.url(1_000_000), timeout=5)

A `V2RayClient` is a second real `v2ray` (or, with core="xray", `xray`) process with a SOCKS inbound on a
free 127.0.0.1 port and one VMess or VLESS outbound, over the transport of a profile (ClientTransport:
plain TCP, REALITY Vision, WebSocket over TLS); `client_from_link()` builds one from a share link exactly as
a subscriber's app would read it. `fetch()` downloads through its SOCKS port. Every process started here is
killed on exit. Used by the agent's V2Ray driver tests, the end-to-end tests and the benchmarks. Traffic
through a tunnel goes to the internet host (tests/world.py: the `internet` fixture), never to loopback.

For the profiles: `make_certificate()` writes a self-signed certificate and key the data-plane user can read
(for *-ws-tls inbounds), `reality_keys()` makes a REALITY key pair in-process (never by parsing
`xray x25519`, whose output keeps changing), `TlsTarget` is a TLS 1.3 server to be a REALITY inbound's
`dest`, and `peer_certificate_sha256()` is the unauthenticated probe a censor would send.
"""

from __future__ import annotations

import atexit
import base64
import dataclasses
import datetime
import hashlib
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import httpx

V2RAY_ENV = "VPNFLEET_V2RAY"
V2RAY = os.environ.get(V2RAY_ENV) or shutil.which("v2ray") or "v2ray"
XRAY_ENV = "VPNFLEET_XRAY"
#: $VPNFLEET_XRAY, else `xray` on PATH, else the venv's (the Makefile builds it there; pytest run directly
#: from .venv/bin puts nothing on PATH).
XRAY = (os.environ.get(XRAY_ENV) or shutil.which("xray") or str(Path(sys.executable).parent / "xray"))
CHUNK = 65536
#: The flow of REALITY Vision clients.
VISION_FLOW = "xtls-rprx-vision"


def v2ray_binary() -> str | None:
    """The v2ray binary the tests use ($VPNFLEET_V2RAY, else `v2ray` on PATH); None if there is none."""
    return shutil.which(V2RAY)


def xray_binary() -> str | None:
    """The xray binary the tests use (see XRAY); None if there is none."""
    return shutil.which(XRAY)


def core_binary(core: str) -> str:
    """The client binary for a core name ("v2ray" | "xray")."""
    return XRAY if core == "xray" else V2RAY


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

@dataclasses.dataclass(frozen=True)
class ClientTransport:
    """The client side of an inbound's profile (agent.v2ray.spec): how to reach it beyond address and port."""

    #: "" / "vmess" (plain TCP), "vless-reality-vision", "vmess-ws-tls", "vless-ws-tls".
    profile: str = ""
    #: SNI (REALITY: one of the inbound's server names; ws-tls: the certificate's name).
    server_name: str = ""
    ws_path: str = "/"
    #: REALITY: the inbound's public key (base64url, no padding) and the short id this client sends.
    public_key: str = ""
    short_id: str = ""
    #: ws-tls on Xray clients: the SHA-256 (hex) of the node's certificate, pinned (Xray 26 refuses
    #: allowInsecure); V2Ray clients skip verification with allowInsecure instead.
    certificate_sha256: str = ""


PLAIN = ClientTransport()


def _stream_settings(transport: ClientTransport, core: str) -> dict[str, Any] | None:
    if transport.profile == "vless-reality-vision":
        return {"network": "tcp", "security": "reality",
                "realitySettings": {"serverName": transport.server_name, "fingerprint": "chrome",
                                    "publicKey": transport.public_key, "shortId": transport.short_id}}
    if transport.profile.endswith("-ws-tls"):
        tls: dict[str, Any] = {"serverName": transport.server_name}
        if core == "xray":
            tls["pinnedPeerCertSha256"] = transport.certificate_sha256
        else:
            tls["allowInsecure"] = True
        return {"network": "ws", "security": "tls", "tlsSettings": tls, "wsSettings": {"path": transport.ws_path}}
    return None


def client_config(protocol: str, address: str, port: int, uuid: str, socks_port: int,
                  transport: ClientTransport = PLAIN, core: str = "v2ray") -> dict[str, Any]:
    """A V2Ray/Xray client config: SOCKS on 127.0.0.1:socks_port, everything out through one VMess/VLESS
    server over the transport of its profile (plain TCP by default)."""
    if protocol == "vmess":
        user: dict[str, Any] = {"id": uuid, "alterId": 0, "security": "auto"}
    elif protocol == "vless":
        user = {"id": uuid, "encryption": "none"}
        if transport.profile == "vless-reality-vision":
            user["flow"] = VISION_FLOW
    else:
        raise ValueError(f"unknown protocol {protocol!r}")
    outbound: dict[str, Any] = {"protocol": protocol,
                                "settings": {"vnext": [{"address": address, "port": port, "users": [user]}]}}
    stream = _stream_settings(transport, core)
    if stream is not None:
        outbound["streamSettings"] = stream
    return {
        "log": {"loglevel": "warning"},
        "inbounds": [{"listen": "127.0.0.1", "port": socks_port, "protocol": "socks",
                      "settings": {"udp": False, "auth": "noauth"}}],
        "outbounds": [outbound],
    }


class ClientProcess:
    """A subscriber's client app as a process with a local SOCKS port (`socks_port`), started by `with` and
    killed on exit, its temporary directory removed. Subclasses say what to run (argv)."""

    name = "client"

    def __init__(self, start_timeout: float = 10.0) -> None:
        self.start_timeout = start_timeout
        self.socks_port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def __enter__(self):  # noqa: ANN204 - the subclass
        with open(self.dir / "client.log", "ab") as log_file:
            # Own session: a Ctrl-C meant for pytest does not hit it first; __exit__ kills it either way.
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log_file,
                                         stderr=subprocess.STDOUT, start_new_session=True, cwd=self.dir)
        try:
            wait_port(self.socks_port, self.start_timeout)
        except BaseException:
            output = self.log()
            self.__exit__()
            raise RuntimeError(f"the {self.name} client did not open its SOCKS port: {output[-800:]}") from None
        return self

    def log(self) -> str:
        """What the client process printed so far."""
        try:
            return (self.dir / "client.log").read_text(errors="replace")
        except OSError:
            return ""

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(5)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


class V2RayClient(ClientProcess):
    """A real `v2ray` (core="xray": `xray`) client process; `socks_port` is where to send traffic. REALITY
    clients must be Xray."""

    def __init__(self, protocol: str, address: str, port: int, uuid: str, start_timeout: float = 10.0,
                 transport: ClientTransport = PLAIN, core: str = "v2ray") -> None:
        self.name = core
        super().__init__(start_timeout)
        self.protocol, self.address, self.port, self.uuid = protocol, address, port, uuid
        self.transport, self.core = transport, core

    def argv(self) -> list[str]:
        config = self.dir / "config.json"
        config.write_text(json.dumps(client_config(self.protocol, self.address, self.port, self.uuid,
                                                   self.socks_port, self.transport, self.core)))
        binary = core_binary(self.core)
        return [binary, "run", "-config", str(config)] if self.core == "xray" else [binary, "-config", str(config)]


# -- profiles: certificates, REALITY keys and targets ---------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Certificate:
    """A self-signed certificate and its key on disk."""

    certificate_file: str
    key_file: str
    server_name: str
    #: SHA-256 of the DER certificate, hex (what Xray clients pin, and what a TLS probe compares).
    sha256: str


def make_certificate(directory: Path, server_name: str) -> Certificate:
    """A self-signed EC certificate for server_name (as its SAN: Go refuses a CN-only one) and its key in
    directory. As root, the key is root:<data-plane group> 0640, as operators are told to provision it, and
    directory is made searchable, so V2Ray running as the data-plane user can read both."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(server_name)]), critical=False)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / f"{server_name}.crt", directory / f"{server_name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.touch(mode=0o600)
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(cert_file, 0o644)
    if os.geteuid() == 0:
        from agent import dataplane_user

        user = dataplane_user.resolve()
        os.chown(key_file, 0, user.gid)
        os.chmod(key_file, 0o640)
        os.chmod(directory, os.stat(directory).st_mode | 0o011)  # search only, as for a state dir
    return Certificate(str(cert_file), str(key_file), server_name,
                       hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest())


_shared: Certificate | None = None


def shared_certificate() -> Certificate:
    """One certificate for a whole test session (tests' *-ws-tls inbounds by default), removed at exit."""
    global _shared
    if _shared is None:
        directory = Path(tempfile.mkdtemp(prefix="vpnfleet-tls-"))
        atexit.register(shutil.rmtree, directory, True)
        _shared = make_certificate(directory, "node.example.test")
    return _shared


def reality_keys() -> tuple[str, str]:
    """(private key, public key) of a fresh X25519 pair, base64url without padding, as REALITY takes them."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    key = X25519PrivateKey.generate()
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return tuple(base64.urlsafe_b64encode(b).rstrip(b"=").decode() for b in (raw, public))  # type: ignore[return-value]


class TlsTarget:
    """A TLS 1.3-only server on 127.0.0.1 (Python's ssl: X25519 key shares) answering a tiny HTTP response:
    the site a REALITY inbound borrows its handshake from and forwards probes to. Use as a context manager."""

    def __init__(self, certificate: Certificate, host: str = "127.0.0.1", port: int = 0) -> None:
        self.certificate = certificate
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.minimum_version = ssl.TLSVersion.TLSv1_3  # REALITY needs a TLS 1.3 target
        self._context.set_alpn_protocols(["h2", "http/1.1"])
        self._context.load_cert_chain(certificate.certificate_file, certificate.key_file)
        self._sock = socket.create_server((host, port))
        self.host, self.port = host, self._sock.getsockname()[1]
        self.handshakes = 0  # completed TLS handshakes (counted in the connections' threads)
        self._count = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name="tls-target", daemon=True)

    @property
    def dest(self) -> str:
        return f"{self.host}:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:  # closed: the context exited
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            with self._context.wrap_socket(conn, server_side=True) as tls:
                with self._count:
                    self.handshakes += 1
                tls.recv(4096)
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        except (OSError, ssl.SSLError):
            pass  # REALITY cuts the target off once it has what it needs: expected
        finally:
            conn.close()

    def __enter__(self) -> TlsTarget:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()
        self._thread.join(timeout=5)


def peer_certificate_sha256(port: int, server_name: str, host: str = "127.0.0.1", timeout: float = 5.0) -> str:
    """An unauthenticated TLS handshake (no verification, as a censor's probe): the SHA-256 (hex) of the
    certificate the server presents."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout) as sock:
        with context.wrap_socket(sock, server_hostname=server_name) as tls:
            return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


# -- share links -------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Link:
    """What an app reads from a share link: where to connect, as whom, over which transport."""

    protocol: str
    address: str
    port: int
    uuid: str
    transport: ClientTransport = PLAIN


def parse_link(link: str) -> Link:
    """A `vmess://` (v2rayN JSON) or `vless://` share link, as v2rayN/v2rayNG read them.

    vmess:// is base64 (standard or URL-safe, padding optional) of {"v":"2","ps","add","port","id","aid","net",
    "tls","path","host","sni",...}; vless:// is `vless://UUID@host:port?encryption=none&security=reality|tls
    &pbk=&sid=&sni=&fp=&flow=&type=tcp|ws&path=&host=#name`, IPv6 hosts in brackets.
    """
    if link.startswith("vmess://"):
        raw = link[len("vmess://"):].strip()
        padded = raw + "=" * (-len(raw) % 4)
        decoded = base64.urlsafe_b64decode(padded) if "-" in raw or "_" in raw else base64.b64decode(padded)
        data = json.loads(decoded)
        transport = PLAIN
        if data.get("net") == "ws" and data.get("tls") == "tls":
            transport = ClientTransport(profile="vmess-ws-tls", server_name=data.get("sni") or data.get("host", ""),
                                        ws_path=data.get("path") or "/")
        return Link("vmess", str(data["add"]).strip("[]"), int(data["port"]), data["id"], transport)
    if link.startswith("vless://"):
        url = urllib.parse.urlsplit(link)
        query = dict(urllib.parse.parse_qsl(url.query))
        transport = PLAIN
        if query.get("security") == "reality":
            if query.get("flow") != VISION_FLOW or query.get("type", "tcp") != "tcp":
                raise ValueError(f"a REALITY link without the Vision flow over TCP: {query}")
            transport = ClientTransport(profile="vless-reality-vision", server_name=query.get("sni", ""),
                                        public_key=query.get("pbk", ""), short_id=query.get("sid", ""))
        elif query.get("security") == "tls" and query.get("type") == "ws":
            transport = ClientTransport(profile="vless-ws-tls", server_name=query.get("sni") or query.get("host", ""),
                                        ws_path=query.get("path") or "/")
        return Link("vless", url.hostname or "", int(url.port or 0), urllib.parse.unquote(url.username or ""),
                    transport)
    raise ValueError(f"not a vmess:// or vless:// link: {link[:16]}...")


def client_from_link(link: str, core: str | None = None, certificate_sha256: str = "") -> V2RayClient:
    """A client for a subscriber's share link (use it as a context manager): Xray for VLESS (REALITY needs it;
    V2Ray 4.34's VLESS does not talk to Xray 26's), V2Ray for VMess unless `core` says otherwise.
    certificate_sha256: a test's self-signed certificate on ws+tls, which the client then trusts (Xray pins it,
    V2Ray skips verification)."""
    parsed = parse_link(link)
    core = core or ("xray" if parsed.protocol == "vless" else "v2ray")
    transport = parsed.transport
    if certificate_sha256 and transport.profile.endswith("-ws-tls"):
        transport = dataclasses.replace(transport, certificate_sha256=certificate_sha256)
    return V2RayClient(parsed.protocol, parsed.address, parsed.port, parsed.uuid, transport=transport, core=core)


def main(argv: list[str]) -> None:
    """`serve HOST PORT`: the /bytes/N HTTP server; `serve-tls HOST PORT NAME`: a TLS 1.3 target (REALITY's
    dest) with a self-signed certificate for NAME. Both run until killed (tests/world.py's internet host)."""
    if argv[:1] == ["serve"] and len(argv) == 3:
        with HttpServer(argv[1], int(argv[2])) as web:
            web._thread.join()
    elif argv[:1] == ["serve-tls"] and len(argv) == 4:
        with tempfile.TemporaryDirectory() as tmp, TlsTarget(make_certificate(Path(tmp), argv[3]), argv[1],
                                                             int(argv[2])) as target:
            target._thread.join()
    else:
        raise SystemExit("usage: python -m tests.v2ray_lab serve HOST PORT | serve-tls HOST PORT NAME")


if __name__ == "__main__":
    main(sys.argv[1:])
