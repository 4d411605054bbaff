"""The agent's identity: enrollment (key + CSR -> certificate), renewal, and the mTLS credentials built from it.

Files in state_dir (the node id file is written last, so its presence means "enrolled"):
  agent.key  EC P-256 private key, PEM, mode 0600; created here, never sent anywhere
  agent.crt  the certificate the controller signed for that key (mode 0600 too: it names the node)
  ca.pem     the CA chain the controller returned; pinned for every later connection
  node_id    the node's UUID (also the certificate's common name)

Certificates are short-lived. ``renew`` (Agent.Renew over mTLS) replaces the key and certificate once less
than a third of the lifetime is left; ``enroll`` with a re-enrollment token replaces the whole identity. Both
write the new key and certificate as one pair (``store_key_and_cert``): a crash at any point leaves either the
old pair or the new one, never a key beside a certificate that is not its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import fcntl
import logging
import os
import socket
from pathlib import Path
from typing import Iterator

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import agent
from agent.atomicfile import fsync_dir, write_atomic
from agent.backoff import Backoff
from agent.config import AgentConfig, ConfigError
from protos import agent_pb2, agent_pb2_grpc

log = logging.getLogger(__name__)

KEY_FILE = "agent.key"
CERT_FILE = "agent.crt"
CA_FILE = "ca.pem"
NODE_ID_FILE = "node_id"
#: flock(2)ed while an enrollment replaces the identity (`--reenroll` runs beside the agent) and while the
#: agent reads it: the controller drops the old stream the moment it issues the new certificate, and the
#: agent's reconnect must wait for the new files rather than present the dead certificate
LOCK_FILE = ".identity.lock"

#: How long one Enroll or Renew call may take before it counts as a transient failure.
ENROLL_TIMEOUT_SECONDS = 15.0
#: Renew once less than this share of the certificate's lifetime is left.
RENEW_WHEN_LEFT = 1 / 3
#: The new pair is staged under these names first; both present means "commit" (see store_key_and_cert).
_NEXT = ".next"

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


class RenewalRefused(Exception):
    """Agent.Renew refused: the certificate is revoked or replaced, or the answer is unusable. Not final by
    itself: the next Connect tells whether the current certificate still works."""


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
    recover_key_and_cert(state)
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


@contextlib.contextmanager
def identity_lock(state_dir: Path, exclusive: bool) -> Iterator[None]:
    """Hold the state dir's identity lock (blocking): exclusive to replace the identity, shared to read it."""
    fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


def load_identity_when_settled(state_dir: Path) -> Identity | None:
    """load_identity, after any enrollment replacing the identity right now has finished (blocks: run it in
    a thread)."""
    with identity_lock(state_dir, exclusive=False):
        return load_identity(state_dir)


def store_key_and_cert(state_dir: Path, key_pem: bytes, cert_pem: bytes) -> None:
    """Replace agent.key and agent.crt as one pair, crash-safely and privately (0600).

    Both are first written whole as agent.key.next and agent.crt.next (the second one's arrival is the commit
    point), then renamed over the old ones; recover_key_and_cert finishes or discards an interrupted swap.
    """
    write_atomic(state_dir / (KEY_FILE + _NEXT), key_pem, 0o600)
    write_atomic(state_dir / (CERT_FILE + _NEXT), cert_pem, 0o600)
    _swap_in(state_dir)


def recover_key_and_cert(state_dir: Path) -> None:
    """Finish a pair swap a crash interrupted after its commit point, or drop one interrupted before it."""
    key_next, cert_next = state_dir / (KEY_FILE + _NEXT), state_dir / (CERT_FILE + _NEXT)
    if cert_next.exists():
        _swap_in(state_dir)  # committed: roll forward (the key may already be in place)
    elif key_next.exists():
        key_next.unlink(missing_ok=True)  # the certificate never arrived: the old pair stands
        fsync_dir(state_dir)


def _swap_in(state_dir: Path) -> None:
    for name in (KEY_FILE, CERT_FILE):  # the key first: the certificate's .next marks the swap unfinished
        try:
            os.replace(state_dir / (name + _NEXT), state_dir / name)
        except FileNotFoundError:
            pass  # moved already (by an interrupted earlier swap, or another process finishing this one)
    fsync_dir(state_dir)


def certificate_times(cert_pem: bytes) -> tuple[dt.datetime, dt.datetime]:
    """(not before, not after) of a PEM certificate, in UTC."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.not_valid_before_utc, cert.not_valid_after_utc


def renewal_due_at(cert_pem: bytes) -> dt.datetime:
    """When to renew: once less than RENEW_WHEN_LEFT of the certificate's lifetime is left."""
    not_before, not_after = certificate_times(cert_pem)
    return not_after - (not_after - not_before) * RENEW_WHEN_LEFT


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
        # the controller's limits mirrored (controller/grpc_options.py; the agent wheel cannot import it, and
        # tests/unit/test_grpc_options.py checks they agree): the largest desired state it sends, the largest
        # batch it takes
        ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
        ("grpc.max_send_message_length", MAX_SEND_BYTES),
    ]


#: what the agent takes from / sends to the controller in one message (controller/grpc_options.py)
MAX_RECEIVE_BYTES = 19 * 1024 * 1024
MAX_SEND_BYTES = 11 * 1024 * 1024


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


async def enroll_once(config: AgentConfig, csr_pem: bytes, token: str | None = None) -> agent_pb2.EnrollResponse:
    """One Enroll call (with ``token``, or the config's). Raises EnrollmentRefused on a permanent refusal,
    grpc.aio.AioRpcError otherwise."""
    async with grpc.aio.secure_channel(
        config.enroll_addr, enrollment_credentials(config), options=channel_options(config)
    ) as channel:
        stub = agent_pb2_grpc.EnrollmentStub(channel)
        request = agent_pb2.EnrollRequest(
            token=token or config.enrollment_token, csr_pem=csr_pem, agent_version=agent.__version__
        )
        try:
            return await stub.Enroll(request, timeout=ENROLL_TIMEOUT_SECONDS, wait_for_ready=False)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _ENROLL_PERMANENT:
                raise EnrollmentRefused(f"enrollment refused: {exc.code().name}: {exc.details()}") from exc
            raise


def store_identity(state_dir: Path, response: agent_pb2.EnrollResponse, ca_fallback: bytes,
                   key_pem: bytes | None = None) -> None:
    """Persist the enrollment answer (with the key it was made for, if not on disk yet); node_id goes last
    because it marks enrollment as complete."""
    if not response.node_id or not response.certificate_pem:
        raise EnrollmentRefused("enrollment answer lacks node id or certificate")
    if key_pem is not None:
        _check_pair(key_pem, response.certificate_pem, response.node_id, EnrollmentRefused)
        store_key_and_cert(state_dir, key_pem, response.certificate_pem)
    else:
        write_atomic(state_dir / CERT_FILE, response.certificate_pem, 0o600)
    write_atomic(state_dir / CA_FILE, response.ca_chain_pem or ca_fallback, 0o644)
    write_atomic(state_dir / NODE_ID_FILE, response.node_id.encode() + b"\n", 0o644)


def _check_pair(key_pem: bytes, cert_pem: bytes, node_id: str, error: type[Exception]) -> None:
    """The certificate we were given is for our key and names the node; anything else is useless to us."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise error(f"the controller's certificate is not PEM: {exc}") from exc
    key = serialization.load_pem_private_key(key_pem, password=None)
    if cert.public_key() != key.public_key():
        raise error("the controller's certificate is not for this agent's key")
    names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [node_id]:
        raise error(f"the controller's certificate names {names}, not node {node_id}")


async def enroll(config: AgentConfig, token: str, backoff: Backoff | None = None,
                 attempts: int | None = None) -> Identity:
    """Enroll with ``token`` and store the identity it gives, replacing any stored one (re-enrollment).

    A fresh key per enrollment, kept in memory until the certificate for it arrives: an interrupted attempt
    leaves the old identity (if any) as it was. Transient failures are retried with backoff (``attempts``
    calls at most; None: forever); a refusal raises EnrollmentRefused.
    """
    state_dir = Path(config.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = new_private_key()
    csr_pem = build_csr(key, socket.gethostname())
    backoff = backoff or Backoff()
    tried = 0
    lock = identity_lock(state_dir, exclusive=True)
    await asyncio.to_thread(lock.__enter__)
    try:
        while True:
            try:
                response = await enroll_once(config, csr_pem, token)
                break
            except grpc.aio.AioRpcError as exc:
                tried += 1
                if attempts is not None and tried >= attempts:
                    raise
                delay = backoff.next_delay()
                log.warning("enrollment at %s failed (%s); retrying in %.1fs", config.enroll_addr, exc.code().name,
                            delay)
                await asyncio.sleep(delay)
        store_identity(state_dir, response, config.ca_cert_pem.encode(), key_pem=private_key_pem(key))
    finally:
        lock.__exit__(None, None, None)
    log.info("enrolled as node %s", response.node_id)
    identity = load_identity(state_dir)
    assert identity is not None  # just written
    return identity


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
    return await enroll(config, config.enrollment_token, backoff)


async def renew(config: AgentConfig, identity: Identity) -> Identity:
    """Agent.Renew with the current identity: a new key, a new certificate, stored as one pair.

    Raises RenewalRefused on a refusal or an unusable answer, grpc.aio.AioRpcError on a transient failure
    (the current certificate stays in place either way).
    """
    key = new_private_key()
    request = agent_pb2.RenewRequest(csr_pem=build_csr(key, identity.node_id), agent_version=agent.__version__)
    async with grpc.aio.secure_channel(
        config.grpc_addr, mtls_credentials(identity), options=channel_options(config)
    ) as channel:
        try:
            response = await agent_pb2_grpc.AgentStub(channel).Renew(request, timeout=ENROLL_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _ENROLL_PERMANENT:
                raise RenewalRefused(f"{exc.code().name}: {exc.details()}") from exc
            raise
    key_pem = private_key_pem(key)
    _check_pair(key_pem, response.certificate_pem, identity.node_id, RenewalRefused)
    state_dir = identity.key_path.parent
    store_key_and_cert(state_dir, key_pem, response.certificate_pem)
    if response.ca_chain_pem and response.ca_chain_pem != identity.ca_pem:
        write_atomic(state_dir / CA_FILE, response.ca_chain_pem, 0o644)
    renewed = load_identity(state_dir)
    assert renewed is not None  # just written
    _, not_after = certificate_times(renewed.cert_pem)
    log.info("certificate renewed; the new one is valid until %s", not_after.isoformat())
    return renewed


def ensure_private_mode(path: Path) -> None:
    """Tighten a key file that someone loosened; the key must stay readable by the agent only."""
    if path.exists() and path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
