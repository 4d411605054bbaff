"""The controller's certificate authority: CA, gRPC server certificate, and signing agents' CSRs.

Keys are EC P-256, made with ``cryptography``. Files live in DATA_DIR/pki; private keys are 0600.
An agent's identity is its certificate: common name = node uuid, signed by this CA. Agent certificates are
short (``pki.agent_cert_days``, 90 by default): agents renew them over mTLS well before they expire.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.config import CONTROLLER_TLS_NAME
from controller.private_files import write_private

CA_VALIDITY = dt.timedelta(days=3650)
SERVER_VALIDITY = dt.timedelta(days=825)
#: the default lifetime of an agent certificate (settings.agent_cert_days)
AGENT_VALIDITY = dt.timedelta(days=90)
#: how far back a certificate's not-before is set, for clocks a little behind ours (at most a tenth of the
#: lifetime, so that a short certificate's renewal point, two thirds into its life, stays where it belongs)
CLOCK_SKEW = dt.timedelta(minutes=5)


class CsrError(ValueError):
    """A certificate signing request that cannot be signed."""


class CaFilesError(RuntimeError):
    """The CA's files on disk are incomplete or unreadable: the controller must not start (or mint a new CA)."""


@dataclass(frozen=True)
class KeyPair:
    key_pem: bytes
    cert_pem: bytes


@dataclass(frozen=True)
class IssuedCertificate:
    """An agent certificate and what the controller records of it (models.Node.cert_*)."""

    cert_pem: bytes
    fingerprint: str
    serial: str  # lowercase hex
    not_after: dt.datetime


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def fingerprint(cert_pem: bytes) -> str:
    """Hex SHA-256 of the certificate's DER encoding."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def serial_hex(cert: x509.Certificate) -> str:
    """The certificate's serial number as lowercase hex (what operators compare with ``openssl x509``)."""
    return format(cert.serial_number, "x")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class CertificateAuthority:
    """Loads or creates the CA in ``directory`` and issues certificates."""

    def __init__(self, directory: Path, agent_validity: dt.timedelta = AGENT_VALIDITY) -> None:
        if agent_validity <= dt.timedelta(0):
            raise ValueError("agent certificate lifetime must be positive")
        self.directory = directory
        self.agent_validity = agent_validity
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        key_path, cert_path = directory / "ca.key", directory / "ca.crt"
        if key_path.exists() or cert_path.exists():
            self._key, self.cert_pem = self._load(key_path, cert_path)
        else:
            self._key, self.cert_pem = self._create(key_path, cert_path)
        self._cert = x509.load_pem_x509_certificate(self.cert_pem)

    @staticmethod
    def _load(key_path: Path, cert_path: Path) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
        """Both files, matching; anything less is an error. A new CA over an old key (or beside an old
        certificate) would silently orphan every node enrolled with the old one."""
        for present, missing in ((key_path, cert_path), (cert_path, key_path)):
            if present.exists() and not missing.exists():
                raise CaFilesError(
                    f"{missing} is missing but {present} exists: restore {missing.name} from a backup "
                    f"(refusing to create a new CA, which would cut off every enrolled node)")
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            cert_pem = cert_path.read_bytes()
            cert = x509.load_pem_x509_certificate(cert_pem)
        except (OSError, ValueError, TypeError) as exc:
            raise CaFilesError(f"cannot load the CA from {key_path.parent}: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CaFilesError(f"{key_path} is not an EC private key")
        if cert.public_key() != key.public_key():
            raise CaFilesError(f"{cert_path} does not belong to the key in {key_path}")
        if key_path.stat().st_mode & 0o077:
            os.chmod(key_path, 0o600)  # someone loosened it; the CA key stays the controller's alone
        return key, cert_pem

    @staticmethod
    def _create(key_path: Path, cert_path: Path) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vpnfleet"),
                          x509.NameAttribute(NameOID.COMMON_NAME, "vpnfleet CA")])
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(_now() - CLOCK_SKEW).not_valid_after(_now() + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256())
        )
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        # the key first: a crash in between leaves a key without a certificate, which the next start
        # reports instead of quietly replacing
        write_private(key_path, _key_pem(key))
        write_private(cert_path, cert_pem, 0o644)
        return key, cert_pem

    def server_keypair(self, extra_hosts: list[str]) -> KeyPair:
        """The gRPC server certificate; re-issued when a host is missing from it or it nears expiry."""
        key_path, cert_path = self.directory / "server.key", self.directory / "server.crt"
        hosts = sorted({CONTROLLER_TLS_NAME, "localhost", "127.0.0.1", *[h for h in extra_hosts if h]})
        if key_path.exists() and cert_path.exists():
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            have = {str(v) for v in san.get_values_for_type(x509.DNSName)} | {
                str(v) for v in san.get_values_for_type(x509.IPAddress)}
            if set(hosts) <= have and cert.not_valid_after_utc - _now() > dt.timedelta(days=30):
                return KeyPair(key_path.read_bytes(), cert_path.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CONTROLLER_TLS_NAME)]))
            .issuer_name(self._cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - CLOCK_SKEW).not_valid_after(_now() + SERVER_VALIDITY)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        pair = KeyPair(_key_pem(key), cert.public_bytes(serialization.Encoding.PEM))
        write_private(key_path, pair.key_pem)
        write_private(cert_path, pair.cert_pem, 0o644)
        return pair

    def sign_agent_csr(self, csr_pem: bytes, node_uuid: str) -> bytes:
        """Issue a client certificate for node_uuid over the CSR's public key (the CSR's subject is ignored)."""
        return self.issue_agent_certificate(csr_pem, node_uuid).cert_pem

    def issue_agent_certificate(self, csr_pem: bytes, node_uuid: str) -> IssuedCertificate:
        """sign_agent_csr, plus the serial, fingerprint and expiry the controller records for the node."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as exc:
            raise CsrError("CSR is not a PEM certificate signing request") from exc
        if not csr.is_signature_valid:
            raise CsrError("CSR signature does not verify")
        public_key = csr.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or public_key.curve.key_size < 256:
            raise CsrError("CSR must carry an EC key of at least 256 bits")
        now = _now()
        not_after = now + self.agent_validity
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_uuid)]))
            .issuer_name(self._cert.subject).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - min(CLOCK_SKEW, self.agent_validity / 10)).not_valid_after(not_after)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        pem = cert.public_bytes(serialization.Encoding.PEM)
        return IssuedCertificate(cert_pem=pem, fingerprint=fingerprint(pem), serial=serial_hex(cert),
                                 not_after=cert.not_valid_after_utc)
