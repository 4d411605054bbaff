"""The agent's identity is its certificate: what the controller refuses on the mTLS stream."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.config import CONTROLLER_TLS_NAME
from protos import agent_pb2, agent_pb2_grpc
from tests.controller_process import ControllerProcess, wait_for


def _self_signed(cn: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()), cert.public_bytes(serialization.Encoding.PEM))


def _connect(ctl: ControllerProcess, key: bytes, cert: bytes, node_id: str) -> grpc.StatusCode | str:
    ca = (ctl.data_dir / "pki" / "ca.crt").read_bytes()
    creds = grpc.ssl_channel_credentials(ca, key, cert)
    with grpc.secure_channel(f"127.0.0.1:{ctl.grpc_port}", creds,
                             options=[("grpc.ssl_target_name_override", CONTROLLER_TLS_NAME)]) as ch:
        hello = agent_pb2.AgentMessage(hello=agent_pb2.Hello(node_id=node_id, agent_version="test"))
        try:
            for msg in agent_pb2_grpc.AgentStub(ch).Connect(iter([hello]), timeout=5):
                return msg.WhichOneof("kind")
        except grpc.RpcError as exc:
            return exc.code()
    return "no message"


def _node_credentials(ctl: ControllerProcess, nid: str) -> tuple[bytes, bytes]:
    state = ctl.data_dir / "local-nodes" / nid / "state"
    return (state / "agent.key").read_bytes(), (state / "agent.crt").read_bytes()


def test_certificates_the_controller_refuses(controller: ControllerProcess, tmp_path: Path) -> None:
    nid = controller.wait_running(controller.create_node()["id"])["id"]
    key, cert = _node_credentials(controller, nid)

    # a certificate not signed by our CA never gets past the TLS handshake
    rogue_key, rogue_cert = _self_signed(nid)
    assert _connect(controller, rogue_key, rogue_cert, nid) == grpc.StatusCode.UNAVAILABLE

    # a real certificate claiming another node's id in hello
    assert _connect(controller, key, cert, "00000000-0000-0000-0000-000000000000") == \
        grpc.StatusCode.PERMISSION_DENIED
    assert "but certificate is" in controller.log()

    # the node's own certificate works (and takes over the session from the agent: newer epoch wins)
    assert _connect(controller, key, cert, nid) == "welcome"

    # once the node is deleted, its certificate is worthless
    controller.api.delete(f"/api/v1/nodes/{nid}")
    wait_for(lambda: controller.node(nid)["status"] == "deleted", 20, message="deleted")
    assert _connect(controller, key, cert, nid) == grpc.StatusCode.PERMISSION_DENIED
    assert "refused stream from deleted or unknown node" in controller.log()


def test_enrollment_port_does_not_serve_the_stream(controller: ControllerProcess) -> None:
    nid = controller.wait_running(controller.create_node()["id"])["id"]
    key, cert = _node_credentials(controller, nid)
    ca = (controller.data_dir / "pki" / "ca.crt").read_bytes()
    with grpc.secure_channel(f"127.0.0.1:{controller.enroll_port}", grpc.ssl_channel_credentials(ca, key, cert),
                             options=[("grpc.ssl_target_name_override", CONTROLLER_TLS_NAME)]) as ch:
        hello = agent_pb2.AgentMessage(hello=agent_pb2.Hello(node_id=nid))
        with pytest.raises(grpc.RpcError) as err:
            list(agent_pb2_grpc.AgentStub(ch).Connect(iter([hello]), timeout=5))
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
