import io
import os
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from agent.config import AgentConfig, ConfigError
from agent.identity import (
    build_csr,
    certificate_times,
    ensure_identity,
    load_identity,
    mtls_credentials,
    new_private_key,
    private_key_pem,
    renewal_due_at,
    store_identity,
    store_key_and_cert,
)
from agent.main import TOKEN_ENV, parse_args, read_token
from protos import agent_pb2


def config_for(tmp_path, ca_pem: str, token: str = "") -> AgentConfig:
    return AgentConfig(
        grpc_addr="127.0.0.1:1", enroll_addr="127.0.0.1:1", ca_cert_pem=ca_pem,
        state_dir=str(tmp_path), enrollment_token=token,
    )


def test_csr_is_signed_by_the_agent_key():
    key = new_private_key()
    csr = x509.load_pem_x509_csr(build_csr(key, "node-host"))
    assert csr.is_signature_valid
    assert csr.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_identity_is_complete_only_with_the_node_id(tmp_path, throwaway_ca):
    key = new_private_key()
    (tmp_path / "agent.key").write_bytes(private_key_pem(key))
    assert load_identity(tmp_path) is None
    cert = throwaway_ca.sign_csr(build_csr(key, "x"), "node-1")
    store_identity(
        tmp_path, agent_pb2.EnrollResponse(node_id="node-1", certificate_pem=cert, ca_chain_pem=throwaway_ca.cert_pem), b""
    )
    identity = load_identity(tmp_path)
    assert identity.node_id == "node-1"
    assert identity.cert_pem == cert and identity.ca_pem == throwaway_ca.cert_pem
    assert mtls_credentials(identity) is not None


async def test_stored_identity_is_used_without_enrolling(tmp_path, throwaway_ca):
    key = new_private_key()
    (tmp_path / "agent.key").write_bytes(private_key_pem(key))
    os.chmod(tmp_path / "agent.key", 0o644)
    cert = throwaway_ca.sign_csr(build_csr(key, "x"), "node-2")
    store_identity(tmp_path, agent_pb2.EnrollResponse(node_id="node-2", certificate_pem=cert), throwaway_ca.cert_pem)
    identity = await ensure_identity(config_for(tmp_path, throwaway_ca.cert_pem.decode()))
    assert identity.node_id == "node-2"
    assert identity.ca_pem == throwaway_ca.cert_pem  # fallback to the configured CA
    assert stat.S_IMODE((tmp_path / "agent.key").stat().st_mode) == 0o600  # tightened


async def test_not_enrolled_and_no_token_is_a_config_error(tmp_path, throwaway_ca):
    with pytest.raises(ConfigError):
        await ensure_identity(config_for(tmp_path, throwaway_ca.cert_pem.decode()))


def valid(ca_pem: str) -> dict:
    return {"grpc_addr": "h:1", "enroll_addr": "h:2", "ca_cert_pem": ca_pem}


@pytest.mark.parametrize(
    "change",
    [
        {"log_level": "verbose"},
        {"metrics_interval_seconds": 0},
        {"metrics_interval_seconds": "10"},
        {"spool_max_batches": 0},
        {"log_buffer_lines": -1},
        {"reconnect_max_seconds": 0},
        {"ca_cert_pem": "not a pem"},
    ],
)
def test_config_values_are_checked(change, throwaway_ca):
    with pytest.raises(ConfigError):
        AgentConfig.from_dict({**valid(throwaway_ca.cert_pem.decode()), **change})


def test_config_round_trips_and_bad_yaml_is_a_config_error(tmp_path, throwaway_ca):
    config = AgentConfig.from_dict(valid(throwaway_ca.cert_pem.decode()))
    path = tmp_path / "agent.yaml"
    path.write_text(config.to_yaml())
    assert AgentConfig.load(path) == config
    path.write_text("grpc_addr: [unclosed")
    with pytest.raises(ConfigError):
        AgentConfig.load(path)


def _pair(ca, node_id: str = "node-3") -> tuple[bytes, bytes]:
    key = new_private_key()
    return private_key_pem(key), ca.sign_csr(build_csr(key, "x"), node_id)


def _enrolled(tmp_path, ca) -> tuple[bytes, bytes]:
    key_pem, cert = _pair(ca)
    (tmp_path / "agent.key").write_bytes(key_pem)
    store_identity(tmp_path, agent_pb2.EnrollResponse(node_id="node-3", certificate_pem=cert), ca.cert_pem)
    return key_pem, cert


def test_a_new_pair_replaces_the_old_one_privately(tmp_path, throwaway_ca):
    _enrolled(tmp_path, throwaway_ca)
    key_pem, cert = _pair(throwaway_ca)
    store_key_and_cert(tmp_path, key_pem, cert)
    identity = load_identity(tmp_path)
    assert (identity.key_pem, identity.cert_pem) == (key_pem, cert)
    for name in ("agent.key", "agent.crt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert not list(tmp_path.glob("*.next"))


@pytest.mark.parametrize("crash_after", ["key staged", "both staged", "key swapped"])
def test_an_interrupted_swap_leaves_one_whole_pair(tmp_path, throwaway_ca, crash_after):
    old_key, old_cert = _enrolled(tmp_path, throwaway_ca)
    new_key, new_cert = _pair(throwaway_ca)
    (tmp_path / "agent.key.next").write_bytes(new_key)
    if crash_after != "key staged":
        (tmp_path / "agent.crt.next").write_bytes(new_cert)
    if crash_after == "key swapped":
        os.replace(tmp_path / "agent.key.next", tmp_path / "agent.key")
    identity = load_identity(tmp_path)
    expected = (old_key, old_cert) if crash_after == "key staged" else (new_key, new_cert)
    assert (identity.key_pem, identity.cert_pem) == expected
    assert not list(tmp_path.glob("*.next"))


def test_renewal_is_due_with_a_third_of_the_lifetime_left(throwaway_ca):
    _, cert = _pair(throwaway_ca)  # the throwaway CA: 5 minutes back-dated, a day ahead
    not_before, not_after = certificate_times(cert)
    assert renewal_due_at(cert) == not_after - (not_after - not_before) / 3


def test_the_reenrollment_token_never_comes_from_the_command_line(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(ConfigError, match="needs a token"):
        read_token(None)
    (tmp_path / "token").write_text("from-file\n")
    assert read_token(str(tmp_path / "token")) == "from-file"
    monkeypatch.setenv(TOKEN_ENV, " from-env ")
    assert read_token(None) == "from-env"
    monkeypatch.setattr("sys.stdin", io.StringIO("from-stdin\n"))
    assert read_token("-") == "from-stdin"
    with pytest.raises(ConfigError, match="cannot read the token file"):
        read_token(str(tmp_path / "missing"))
    with pytest.raises(SystemExit):
        parse_args(["--reenroll", "--token", "secret"])
