"""The REST API's TLS: the operator's certificate files, or one the controller issues itself from its CA.

A self-issued certificate covers the http_addr host, the public_url host, 127.0.0.1 and localhost; clients trust
DATA_DIR/pki/ca.crt (the CA that signs the agents' certificates too). It is written to DATA_DIR/tls/ (key 0600)
and re-issued when a host is missing or it nears expiry (``CertificateAuthority.server_keypair`` decides).
"""

from __future__ import annotations

import hashlib
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from controller.pki import CertificateAuthority
from controller.settings import Settings, is_unix, split_hostport

TLS_DIR = "tls"
CERT_FILE = "server.crt"
KEY_FILE = "server.key"


class TlsSetupError(RuntimeError):
    """The REST API cannot serve TLS as configured (the message says why)."""


@dataclass(frozen=True)
class RestTls:
    """What uvicorn serves and the banner prints."""

    cert_file: Path
    key_file: Path
    fingerprint: str  # hex SHA-256 of the leaf certificate (DER)
    #: the CA clients should trust (None: the operator's own certificate, trusted however they arranged)
    ca_file: Path | None


def rest_hosts(settings: Settings) -> list[str]:
    """Names the self-issued certificate must carry: where the API listens and where it is published."""
    host = split_hostport(settings.http_addr)[0]
    hosts = {"127.0.0.1", "localhost"}
    if host and host not in ("0.0.0.0", "::"):
        hosts.add(host)
    public_host = urlsplit(settings.public_url).hostname if settings.public_url else None
    if public_host:
        hosts.add(public_host)
    # the gRPC server certificate is the same key pair (pki/server.*): naming its host too keeps the two from
    # re-issuing it in turn at every start (its fingerprint would change each time)
    if not is_unix(settings.advertised_grpc):
        hosts.add(split_hostport(settings.advertised_grpc)[0])
    return sorted(hosts)


def key_file(settings: Settings) -> Path:
    """The TLS private key the REST API will use (for the start-up privacy check)."""
    if settings.tls_key_file:
        return Path(settings.tls_key_file)
    return settings.data_dir / TLS_DIR / KEY_FILE


def prepare(settings: Settings, ca: CertificateAuthority) -> RestTls:
    """The certificate and key files to serve: the configured ones (checked to load), else self-issued."""
    if settings.tls_cert_file or settings.tls_key_file:
        if not (settings.tls_cert_file and settings.tls_key_file):
            raise TlsSetupError("server.tls.cert_file and server.tls.key_file go together: set both or neither")
        cert, key = Path(settings.tls_cert_file), Path(settings.tls_key_file)
        _check_loads(cert, key)
        return RestTls(cert_file=cert, key_file=key, fingerprint=fingerprint(cert.read_bytes()), ca_file=None)
    pair = ca.server_keypair(rest_hosts(settings))
    directory = settings.data_dir / TLS_DIR
    directory.mkdir(mode=0o700, exist_ok=True)
    cert, key = directory / CERT_FILE, directory / KEY_FILE
    _write(key, pair.key_pem, 0o600)
    _write(cert, pair.cert_pem + ca.cert_pem, 0o644)  # the chain: leaf, then the CA clients pin
    return RestTls(cert_file=cert, key_file=key, fingerprint=fingerprint(pair.cert_pem),
                   ca_file=ca.directory / "ca.crt")


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the first certificate in cert_pem, as colon-separated hex (what browsers show)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def _check_loads(cert: Path, key: Path) -> None:
    """Fail at start with the file named, not at the first handshake."""
    for path in (cert, key):
        if not path.is_file():
            raise TlsSetupError(f"TLS file {path} does not exist")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise TlsSetupError(f"cannot use TLS certificate {cert} with key {key}: {exc}") from None


def _write(path: Path, data: bytes, mode: int) -> None:
    """Replace path atomically (a handshake never reads half a file), with the given mode, never through a link."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def download_ca_pem(settings: Settings, ca_pem: bytes) -> str | None:
    """The CA nodes pin their downloads from the controller to: the controller's own CA when it serves https
    with a certificate it issued itself; None (the system trust store) with the operator's certificate or
    behind a TLS proxy (tls off, public_url https)."""
    if settings.tls_enabled and not settings.tls_cert_file:
        return ca_pem.decode()
    return None
