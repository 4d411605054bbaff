"""The agent's identity: enrollment (key + CSR -> certificate) and the mTLS credentials built from it.

Files in state_dir (the node id file is written last, so its presence means "enrolled"):
  agent.key  EC P-256 private key, PEM, mode 0600; created here, never sent anywhere
  agent.crt  the certificate the controller signed for that key
  ca.pem     the CA chain the controller returned; pinned for every later connection
  node_id    the node's UUID (also the certificate's common name)
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import agent
from agent.atomicfile import write_atomic
from agent.backoff import Backoff
from agent.config import AgentConfig, ConfigError
from protos import agent_pb2, agent_pb2_grpc

log = logging.getLogger(__name__)

KEY_FILE = "agent.key"
CERT_FILE = "agent.crt"
CA_FILE = "ca.pem"
NODE_ID_FILE = "node_id"

#: How long one Enroll call may take before it counts as a transient failure.
ENROLL_TIMEOUT_SECONDS = 15.0

#: Enroll answers that no retry can fix: the token is used, unknown or expired, or the CSR is bad.
_ENROLL_PERMANENT = {
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNAUTHENTICATED,
}


class PermanentAuthError(Exception):
    """The controller will not accept this agent until it is re-enrolled; retrying is pointless."""


class EnrollmentRefused(PermanentAuthError):
    """Enrollment.Enroll refused the token or the CSR."""


class CertificateRefused(PermanentAuthError):
    """Agent.Connect refused the agent's certificate (revoked node, or an identity it does not know)."""


@dataclasses.dataclass(frozen=True)
class Identity:
    """What the agent presents on every mTLS connection."""

    node_id: str
    key_pem: bytes
    cert_pem: bytes
    ca_pem: bytes
    key_path: Path
    cert_path: Path


def key_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / KEY_FILE


def cert_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / CERT_FILE


def load_identity(state_dir: str | Path) -> Identity | None:
    """The stored identity, or None if the agent has not completed enrollment."""
    state = Path(state_dir)
    paths = [state / NODE_ID_FILE, state / KEY_FILE, state / CERT_FILE, state / CA_FILE]
    if not all(p.exists() for p in paths):
        return None
    node_id, key_pem, cert_pem, ca_pem = (p.read_bytes() for p in paths)
    return Identity(
        node_id=node_id.decode().strip(),
        key_pem=key_pem,
        cert_pem=cert_pem,
        ca_pem=ca_pem,
        key_path=state / KEY_FILE,
        cert_path=state / CERT_FILE,
    )


def new_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def build_csr(key: ec.EllipticCurvePrivateKey, common_name: str) -> bytes:
    """A PEM PKCS#10 request. The CN is only a hint: the controller puts the node id there."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name or "vpnfleet-agent")]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def channel_options(config: AgentConfig) -> list[tuple[str, object]]:
    """Options for every channel to the controller.

    The target-name override lets the controller be reached under any address (IP, NAT, DNS) while its
    certificate always names CONTROLLER_TLS_NAME; trust still comes only from the pinned CA.
    """
    return [
        ("grpc.ssl_target_name_override", config.tls_server_name),
        # A backstop against half-dead TCP paths. Slower than the server's default minimum ping interval
        # (5 min), so a controller with default settings never answers with "too many pings".
        ("grpc.keepalive_time_ms", 360_000),
        ("grpc.keepalive_timeout_ms", 20_000),
    ]


def enrollment_credentials(config: AgentConfig) -> grpc.ChannelCredentials:
    """Server-authenticated TLS trusting only the CA from the config file."""
    return grpc.ssl_channel_credentials(root_certificates=config.ca_cert_pem.encode())


def mtls_credentials(identity: Identity) -> grpc.ChannelCredentials:
    """Mutual TLS for Agent.Connect: trust the pinned CA chain, present the node's key and certificate."""
    return grpc.ssl_channel_credentials(
        root_certificates=identity.ca_pem,
        private_key=identity.key_pem,
        certificate_chain=identity.cert_pem,
    )


async def enroll_once(config: AgentConfig, csr_pem: bytes) -> agent_pb2.EnrollResponse:
    """One Enroll call. Raises EnrollmentRefused on a permanent refusal, grpc.aio.AioRpcError otherwise."""
    async with grpc.aio.secure_channel(
        config.enroll_addr, enrollment_credentials(config), options=channel_options(config)
    ) as channel:
        stub = agent_pb2_grpc.EnrollmentStub(channel)
        request = agent_pb2.EnrollRequest(
            token=config.enrollment_token, csr_pem=csr_pem, agent_version=agent.__version__
        )
        try:
            return await stub.Enroll(request, timeout=ENROLL_TIMEOUT_SECONDS, wait_for_ready=False)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _ENROLL_PERMANENT:
                raise EnrollmentRefused(f"enrollment refused: {exc.code().name}: {exc.details()}") from exc
            raise


def store_identity(state_dir: Path, response: agent_pb2.EnrollResponse, ca_fallback: bytes) -> None:
    """Persist the enrollment answer; node_id goes last because it marks enrollment as complete."""
    if not response.node_id or not response.certificate_pem:
        raise EnrollmentRefused("enrollment answer lacks node id or certificate")
    write_atomic(state_dir / CERT_FILE, response.certificate_pem, 0o644)
    write_atomic(state_dir / CA_FILE, response.ca_chain_pem or ca_fallback, 0o644)
    write_atomic(state_dir / NODE_ID_FILE, response.node_id.encode() + b"\n", 0o644)


async def ensure_identity(config: AgentConfig, backoff: Backoff | None = None) -> Identity:
    """Return the stored identity, enrolling first if there is none.

    Transient failures (controller down, timeouts) are retried forever with backoff; a refusal raises
    EnrollmentRefused. A missing token is a configuration error.
    """
    state_dir = Path(config.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    existing = load_identity(state_dir)
    if existing is not None:
        ensure_private_mode(existing.key_path)
        return existing
    if not config.enrollment_token:
        raise ConfigError("agent is not enrolled and the config has no 'enrollment_token'")

    # A fresh key per enrollment: a key left behind by an interrupted attempt may belong to nobody.
    key = new_private_key()
    write_atomic(state_dir / KEY_FILE, private_key_pem(key), 0o600)
    csr_pem = build_csr(key, socket.gethostname())

    backoff = backoff or Backoff()
    while True:
        try:
            response = await enroll_once(config, csr_pem)
            break
        except grpc.aio.AioRpcError as exc:
            delay = backoff.next_delay()
            log.warning("enrollment at %s failed (%s); retrying in %.1fs", config.enroll_addr, exc.code().name, delay)
            await asyncio.sleep(delay)
    store_identity(state_dir, response, config.ca_cert_pem.encode())
    log.info("enrolled as node %s", response.node_id)
    identity = load_identity(state_dir)
    assert identity is not None  # just written
    return identity


def ensure_private_mode(path: Path) -> None:
    """Tighten a key file that someone loosened; the key must stay readable by the agent only."""
    if path.exists() and path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
