from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controller.pki import CertificateAuthority, CsrError, fingerprint


def csr_for(key) -> bytes:  # noqa: ANN001
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "whatever-the-agent-says")]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


def test_ca_persists_and_signs_agent_csrs(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path)
    assert oct((tmp_path / "ca.key").stat().st_mode & 0o777) == "0o600"
    assert CertificateAuthority(tmp_path).cert_pem == ca.cert_pem  # loaded, not re-created
    key = ec.generate_private_key(ec.SECP256R1())
    cert = x509.load_pem_x509_certificate(ca.sign_agent_csr(csr_for(key), "node-uuid"))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "node-uuid"
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert ExtendedKeyUsageOID.CLIENT_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.cert_pem))
    assert len(fingerprint(cert.public_bytes(serialization.Encoding.PEM))) == 64


def test_bad_csrs_are_refused(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path)
    with pytest.raises(CsrError):
        ca.sign_agent_csr(b"not a csr", "n")
    with pytest.raises(CsrError, match="EC key"):
        ca.sign_agent_csr(csr_for(rsa.generate_private_key(public_exponent=65537, key_size=2048)), "n")


def test_server_certificate_is_reissued_for_a_new_host(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path)
    first = ca.server_keypair(["vpn.example.com"])
    assert ca.server_keypair(["vpn.example.com"]) == first
    second = ca.server_keypair(["203.0.113.7"])
    assert second != first
    san = x509.load_pem_x509_certificate(second.cert_pem).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert "vpnfleet-controller" in san.get_values_for_type(x509.DNSName)
