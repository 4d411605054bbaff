from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controller.pki import CaFilesError, CertificateAuthority, CsrError, fingerprint


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


def test_agent_certificates_last_the_configured_lifetime(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    default = x509.load_pem_x509_certificate(CertificateAuthority(tmp_path).sign_agent_csr(csr_for(key), "n"))
    assert dt.timedelta(days=89) < default.not_valid_after_utc - dt.datetime.now(dt.timezone.utc) <= dt.timedelta(days=90)
    issued = CertificateAuthority(tmp_path, agent_validity=dt.timedelta(days=7)).issue_agent_certificate(
        csr_for(key), "n")
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    assert issued.not_after == cert.not_valid_after_utc
    assert dt.timedelta(days=6) < issued.not_after - dt.datetime.now(dt.timezone.utc) <= dt.timedelta(days=7)
    assert issued.serial == format(cert.serial_number, "x") and issued.fingerprint == fingerprint(issued.cert_pem)
    # a short certificate is back-dated by a tenth of its life, not 5 minutes (its renewal point stays put)
    short = x509.load_pem_x509_certificate(CertificateAuthority(
        tmp_path, agent_validity=dt.timedelta(seconds=60)).sign_agent_csr(csr_for(key), "n"))
    assert short.not_valid_after_utc - short.not_valid_before_utc <= dt.timedelta(seconds=67)


@pytest.mark.parametrize("lost", ["ca.crt", "ca.key"])
def test_a_lost_ca_file_is_an_error_never_a_new_ca(tmp_path: Path, lost: str) -> None:
    CertificateAuthority(tmp_path)
    kept = ({"ca.crt", "ca.key"} - {lost}).pop()
    before = (tmp_path / kept).read_bytes()
    (tmp_path / lost).unlink()
    with pytest.raises(CaFilesError, match=f"{lost} is missing but .*{kept} exists"):
        CertificateAuthority(tmp_path)
    assert not (tmp_path / lost).exists() and (tmp_path / kept).read_bytes() == before  # nothing replaced


def test_a_ca_certificate_of_another_key_is_an_error(tmp_path: Path) -> None:
    CertificateAuthority(tmp_path / "a")
    CertificateAuthority(tmp_path / "b")
    (tmp_path / "a" / "ca.crt").write_bytes((tmp_path / "b" / "ca.crt").read_bytes())
    with pytest.raises(CaFilesError, match="does not belong to the key"):
        CertificateAuthority(tmp_path / "a")


def test_ca_files_are_private(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "pki")
    ca.server_keypair([])
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "pki").iterdir()}
    assert modes["ca.key"] == modes["server.key"] == 0o600
    assert stat.S_IMODE((tmp_path / "pki").stat().st_mode) == 0o700
    os.chmod(tmp_path / "pki" / "ca.key", 0o644)
    CertificateAuthority(tmp_path / "pki")
    assert stat.S_IMODE((tmp_path / "pki" / "ca.key").stat().st_mode) == 0o600  # tightened at load
