"""The REST API over TLS (issue 10, item 1): the controller's self-issued certificate, what clients pin, the
downloads nodes make with curl, the enrollment token out of every URL, and the public-URL rule for EC2 regions."""

from __future__ import annotations

import hashlib
import shutil
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import grpc
import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.config import CONTROLLER_TLS_NAME
from tests.controller_process import REPO, ControllerProcess
from protos import agent_pb2, agent_pb2_grpc


@pytest.fixture(scope="module")
def ctl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProcess]:
    process = ControllerProcess(tmp_path_factory.mktemp("tls") / "data")
    try:
        yield process.start()
    finally:
        process.cleanup()


def served_certificate(port: int) -> bytes:
    """The DER certificate the controller presents (not verified here: we compare it with the banner)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return tls.getpeercert(binary_form=True)


def test_https_with_the_controller_s_ca_and_the_banner_fingerprint(ctl: ControllerProcess) -> None:
    assert ctl.url.startswith("https://")
    r = ctl.get("/api/v1/health")
    assert r.status_code == 200 and r.url.scheme == "https"
    der = served_certificate(ctl.http_port)
    digest = hashlib.sha256(der).hexdigest().upper()
    fingerprint = ":".join(digest[i:i + 2] for i in range(0, 64, 2))
    log = ctl.log()
    assert f"SHA-256 {fingerprint}" in log, log[-2000:]
    assert f"clients trust the CA {ctl.ca_file}" in log
    cert = x509.load_der_x509_certificate(der)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"127.0.0.1"} <= {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    assert "localhost" in names.get_values_for_type(x509.DNSName)


def test_untrusted_and_plain_http_clients_are_refused(ctl: ControllerProcess) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(ctl.url + "/api/v1/health", timeout=5)  # the system's trust store does not know this CA
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{ctl.http_port}/api/v1/health", timeout=5)  # no plain http on the port
    assert ctl.get("/api/v1/health").status_code == 200  # and it keeps serving


def test_the_tls_key_and_certificate_files(ctl: ControllerProcess) -> None:
    key, cert = ctl.data_dir / "tls" / "server.key", ctl.data_dir / "tls" / "server.crt"
    assert key.stat().st_mode & 0o777 == 0o600
    assert (ctl.data_dir / "tls").stat().st_mode & 0o777 == 0o700
    chain = cert.read_bytes()
    assert chain.count(b"BEGIN CERTIFICATE") == 2 and chain.endswith(ctl.ca_file.read_bytes())


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "--fail", "--silent", "--show-error", *args], capture_output=True, timeout=30)


def test_nodes_download_with_curl_pinned_to_the_ca_and_no_credential(ctl: ControllerProcess, tmp_path: Path) -> None:
    """The curl step of the user data, for real: https only, --cacert the controller's CA, no token."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    package_dir = ctl.data_dir / "agent-package"
    wheel = next(package_dir.glob("*.whl"))
    requirements = next(package_dir.glob("*-requirements.txt"))
    for served in (wheel, requirements):
        out = tmp_path / served.name
        result = curl("--proto", "=https", "--cacert", str(ctl.ca_file), "--output", str(out),
                      f"{ctl.url}/agent/package/{served.name}")
        assert result.returncode == 0, result.stderr
        assert out.read_bytes() == served.read_bytes()
    # without the pinned CA (the system's store only) the download fails: nothing unverified is installed
    assert curl("--output", str(tmp_path / "x"), f"{ctl.url}/agent/package/{wheel.name}").returncode == 60
    # and never in clear
    assert curl("--proto", "=https", f"http://127.0.0.1:{ctl.http_port}/agent/package/{wheel.name}").returncode != 0


def _enroll(ctl: ControllerProcess, token: str) -> grpc.StatusCode | None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sniffer")])).sign(key, hashes.SHA256()))
    creds = grpc.ssl_channel_credentials(ctl.ca_file.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{ctl.enroll_port}", creds,
                             options=[("grpc.ssl_target_name_override", CONTROLLER_TLS_NAME)]) as channel:
        try:
            agent_pb2_grpc.EnrollmentStub(channel).Enroll(
                agent_pb2.EnrollRequest(token=token, csr_pem=csr.public_bytes(serialization.Encoding.PEM)), timeout=10)
        except grpc.RpcError as exc:
            return exc.code()
    return None


def test_the_sniffed_token_replay_fails(ctl: ControllerProcess) -> None:
    """The attack of issue 10: sniff the token (it rode in the wheel URL), redeem it first. Now the token is in no
    URL the controller hands out or serves, and once the node enrolled it is spent."""
    node = ctl.create_node(name="tls-node")
    ctl.wait_running(node["id"], timeout=60)
    token = yaml.safe_load((ctl.data_dir / "local-nodes" / node["id"] / "agent.yaml").read_text())["enrollment_token"]
    assert token
    spec = ctl.api.get("/openapi.json").text
    assert "token" not in yaml.safe_dump(ctl.api.get("/openapi.json").json()["paths"].get(
        "/agent/package/{filename}", {}))
    for path in ("/api/v1/nodes", f"/api/v1/nodes/{node['id']}", "/api/v1/operations"):
        assert token not in ctl.api.get(path).text
    assert token not in ctl.log() and token not in spec
    # single use: the real agent redeemed it, a replay is refused
    assert _enroll(ctl, token) == grpc.StatusCode.PERMISSION_DENIED
    assert ctl.node(node["id"])["agent"]["online"]


def test_ec2_regions_refuse_a_plain_http_public_url(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    data = tmp_path / "data"

    def start(server: dict) -> subprocess.CompletedProcess:
        config.write_text(yaml.safe_dump({"server": {"data_dir": str(data), **server},
                                          "aws": {"regions": {"us-east-1": {"template_id": "lt-0123"}}}}))
        return subprocess.run([sys.executable, "-m", "controller.main", "--config", str(config)], cwd=REPO,
                              capture_output=True, text=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})

    refused = start({"tls": {"enabled": False}, "public_url": "http://ctl.example:8080"})
    assert refused.returncode == 2
    assert "public URL http://ctl.example:8080 is not https" in refused.stderr
    assert "allow_insecure_public_url" in refused.stderr
    assert not (data / "vpnfleet.db").exists()  # refused before anything was created
