"""The EC2 provider end to end: a real controller against moto (server mode); the test plays cloud-init by
reading the user data back from EC2 and starting the agent with what it carries."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
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
from controller.cloudinit import (agent_config_from_user_data, download_ca_from_user_data, package_url_from_user_data,
                                  xray_download_from_user_data)
from tests.conftest_moto import FAKE_KEY, FAKE_SECRET, create_launch_template, ec2_client
from tests.controller_process import REPO, ControllerProcess, wait_for
from protos import agent_pb2, agent_pb2_grpc

REGION = "us-east-1"


def ec2_config(tmp_path: Path, endpoint: str, wait_timeout: float = 60, token_ttl: float = 60) -> Path:
    """A controller config with one EC2 region on moto (fresh launch template), fast sync."""
    config = tmp_path / "conf.yaml"
    config.write_text(yaml.safe_dump({
        "aws": {"access_key": FAKE_KEY, "secret_key": FAKE_SECRET, "endpoint_url": endpoint,
                "regions": {REGION: {"name": "美东", "template_id": create_launch_template(endpoint, REGION)}}},
        "scheduler": {"instance_sync_interval": 1, "instance_wait_timeout": wait_timeout},
        "enrollment": {"token_ttl": token_ttl},
    }))
    return config


@pytest.fixture
def ec2_controller(tmp_path: Path, moto_endpoint: str) -> Iterator[tuple[ControllerProcess, str]]:
    ctl = ControllerProcess(tmp_path / "data", config=ec2_config(tmp_path, moto_endpoint),
                            env={"AWS_EC2_METADATA_DISABLED": "true"})
    try:
        yield ctl.start(), moto_endpoint
    finally:
        ctl.cleanup()


class CloudInit:
    """Plays cloud-init on this machine: the node's user data, read back from EC2, drives everything."""

    def __init__(self, endpoint: str, instance_id: str, root: Path) -> None:
        attr = ec2_client(endpoint, REGION).describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
        self.user_data = base64.b64decode(attr["UserData"]["Value"]).decode()
        self.config = agent_config_from_user_data(self.user_data)
        self.package_url, self.package_sha256 = package_url_from_user_data(self.user_data)
        # downloads trust what the user data pins (curl --cacert): the controller's CA, never the system's
        ca_pem = download_ca_from_user_data(self.user_data)
        assert ca_pem is not None, "the controller serves its own certificate: its nodes must pin its CA"
        self.verify = ssl.create_default_context(cadata=ca_pem)
        self.root = root
        self.proc: subprocess.Popen[bytes] | None = None

    def start_agent(self, netns: str | None = None) -> subprocess.Popen[bytes]:
        """Start the agent as the systemd unit would (inside network namespace ``netns`` when given), after
        installing the Xray binary the user data names, checked against its sha256, as cloud-init does."""
        self.config.state_dir = str(self.root / "state")
        self.root.mkdir(parents=True, exist_ok=True)
        env = {**os.environ}
        xray = xray_download_from_user_data(self.user_data)
        response = httpx.get(xray.url, timeout=30, verify=self.verify) if xray is not None else None
        if response is not None:
            assert response.is_success, response.text
            body = response.content
            assert hashlib.sha256(body).hexdigest() == xray.sha256, "the Xray download does not match its sha256"
            binary = self.root / "xray"
            binary.write_bytes(body)
            binary.chmod(0o755)
            env["VPNFLEET_XRAY"] = str(binary)
        path = self.root / "agent.yaml"
        path.write_text(self.config.to_yaml())
        prefix = ["ip", "netns", "exec", netns] if netns else []
        self.proc = subprocess.Popen([*prefix, sys.executable, "-m", "agent", "--config", str(path)], cwd=REPO,
                                     stdout=open(self.root / "agent.out", "wb"), stderr=subprocess.STDOUT, env=env)
        return self.proc

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)


def _enroll(addr: str, ca_pem: str, token: str) -> grpc.StatusCode | agent_pb2.EnrollResponse:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "intruder")]))
           .sign(key, hashes.SHA256()))
    creds = grpc.ssl_channel_credentials(ca_pem.encode())
    with grpc.secure_channel(addr, creds, options=[("grpc.ssl_target_name_override", CONTROLLER_TLS_NAME)]) as ch:
        try:
            return agent_pb2_grpc.EnrollmentStub(ch).Enroll(
                agent_pb2.EnrollRequest(token=token, csr_pem=csr.public_bytes(serialization.Encoding.PEM)), timeout=10)
        except grpc.RpcError as exc:
            return exc.code()


def test_ec2_node_from_user_data_to_running_and_deleted(ec2_controller, tmp_path: Path) -> None:
    controller, endpoint = ec2_controller
    api = controller.api
    # seed 000's API: one active instance per region
    r = api.post("/api/v2ray/instances", json={"region": REGION})
    assert r.status_code == 200 and r.json()["status"] == "pending"
    uuid = r.json()["uuid"]
    assert api.post("/api/v2ray/instances", json={"region": REGION}).json()["uuid"] == uuid

    node = wait_for(lambda: (n := controller.node(uuid))["instance_id"] and n, 20, message="EC2 instance launched")
    ec2 = ec2_client(endpoint, REGION)
    inst = ec2.describe_instances(InstanceIds=[node["instance_id"]])["Reservations"][0]["Instances"][0]
    tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
    assert tags["vpnfleet:node-id"] == uuid and inst["State"]["Name"] == "running"

    boot = CloudInit(endpoint, node["instance_id"], tmp_path / "node")
    assert boot.user_data.startswith("#cloud-config")
    assert boot.config.grpc_addr == f"127.0.0.1:{controller.grpc_port}"
    assert boot.config.enroll_addr == f"127.0.0.1:{controller.enroll_port}"

    # the agent package: over https pinned to the controller's CA, no credential in its URL (a sniffed URL gives
    # nothing to redeem), and its sha256 is the one in the user data
    assert boot.package_url.startswith("https://") and "?" not in boot.package_url
    assert boot.config.enrollment_token not in boot.package_url
    pkg = httpx.get(boot.package_url, timeout=10, verify=boot.verify)
    assert pkg.status_code == 200 and hashlib.sha256(pkg.content).hexdigest() == boot.package_sha256

    try:
        boot.start_agent()
        node = controller.wait_running(uuid)
        assert node["public_ip"] == inst["PublicIpAddress"]
        compat = api.get(f"/api/v2ray/instances/{uuid}").json()
        assert compat["ec2_id"] == node["instance_id"] and compat["status"] == "running"
        assert compat["ec2_region"] == REGION and compat["ec2_region_name"] == "美东"

        # the token worked once: a second enrollment is refused (the package is not secret: still served)
        assert _enroll(boot.config.enroll_addr, boot.config.ca_cert_pem, boot.config.enrollment_token) \
            == grpc.StatusCode.PERMISSION_DENIED
        assert "already used" in controller.log()

        # stop/start go through EC2 too
        assert api.post(f"/api/v1/nodes/{uuid}/stop").status_code == 202
        wait_for(lambda: controller.node(uuid)["status"] == "stopped", 20, message="stopped")
        state = ec2.describe_instances(InstanceIds=[node["instance_id"]])["Reservations"][0]["Instances"][0]["State"]
        assert state["Name"] == "stopped"
        assert api.post(f"/api/v1/nodes/{uuid}/start").status_code == 202
        controller.wait_running(uuid)

        r = api.delete(f"/api/v2ray/instances/{uuid}")
        assert r.status_code == 200 and r.json() == {"status": "deleting"}
        wait_for(lambda: controller.node(uuid)["status"] == "deleted", 20, message="deleted")
        state = ec2.describe_instances(InstanceIds=[node["instance_id"]])["Reservations"][0]["Instances"][0]["State"]
        assert state["Name"] == "terminated"
        # a deleted node's agent is refused from then on
        wait_for(lambda: boot.proc.poll() is not None or "deleted" in controller.log(), 20, message="refused")
    finally:
        boot.stop()

    # every EC2 call is logged, and no secret is
    log = controller.log()
    assert "run_instances" in log and "terminate_instances" in log
    assert boot.config.enrollment_token not in log and FAKE_SECRET not in log


def test_instance_terminated_outside_vpnfleet_is_marked(ec2_controller, tmp_path: Path) -> None:
    controller, endpoint = ec2_controller
    uuid = controller.create_node(REGION)["id"]
    node = wait_for(lambda: (n := controller.node(uuid))["instance_id"] and n, 20, message="launched")
    boot = CloudInit(endpoint, node["instance_id"], tmp_path / "node")
    try:
        boot.start_agent()
        controller.wait_running(uuid)
        ec2_client(endpoint, REGION).terminate_instances(InstanceIds=[node["instance_id"]])
        node = wait_for(lambda: (n := controller.node(uuid))["status"] == "error" and n, 20,
                        message="sync loop notices")
        assert "terminated outside vpnfleet" in node["status_reason"]
        # the region is free again for seed 000's one-active-instance rule
        r = controller.api.post("/api/v2ray/instances", json={"region": REGION})
        assert r.json()["uuid"] != uuid
    finally:
        boot.stop()


def test_stuck_create_times_out_and_expired_token_is_refused(tmp_path: Path, moto_endpoint: str) -> None:
    controller = ControllerProcess(tmp_path / "data", config=ec2_config(tmp_path, moto_endpoint, 3, 1),
                                   env={"AWS_EC2_METADATA_DISABLED": "true"})
    boot = None
    try:
        controller.start()
        uuid = controller.create_node(REGION)["id"]
        node = wait_for(lambda: (n := controller.node(uuid))["status"] == "error" and n, 20, message="timeout")
        assert "did not connect within 3s" in node["status_reason"]

        # cloud-init runs too late: the token expired, the agent is refused for good (exit 3)
        boot = CloudInit(moto_endpoint, node["instance_id"], tmp_path / "node")
        assert boot.start_agent().wait(30) == 3
        assert "expired" in controller.log()
        assert not controller.node(uuid)["agent"]["enrolled"]
    finally:
        if boot:
            boot.stop()
        controller.cleanup()
