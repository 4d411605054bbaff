"""The agent certificate lifecycle with real agent processes over real mTLS: renew, revoke, re-enroll.

The controller side is the real hub, servicers and services on real gRPC servers and a real SQLite file, in
this process: its CA can then issue certificates that last seconds (``pki.agent_cert_days`` counts days), so
a renewal happens within the test. The REST routes run in a real controller process at the end.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import AsyncIterator

import grpc
import pytest
import yaml
from cryptography import x509
from sqlalchemy import select

from agent.config import CONTROLLER_TLS_NAME
from controller.db import make_engine, make_sessionmaker, prepare_database
from controller.events import EventBus
from controller.hub.hub import Hub
from controller.hub.servicer import AgentServicer, EnrollmentServicer
from controller.models import Node
from controller.providers.local import kill_processes_of, processes_of
from controller.pki import CertificateAuthority, fingerprint
from controller.services.enrollment import EnrollmentService
from controller.services.logs import LogStore
from controller.services.node_certificates import NodeCertificateService
from controller.services.node_state import NodeStateWriter
from controller.services.telemetry import TelemetryIngest
from controller.settings import Settings
from protos import agent_pb2, agent_pb2_grpc
from tests.controller_process import ControllerProcess, free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
NODE = "5e1f0c3a-7d2b-4c59-9a8e-0f1b2c3d4e5f"

pytestmark = pytest.mark.timeout(120)


class Hubside:
    """The controller's agent-facing half: DB, hub, enrollment and certificate services, both gRPC servers."""

    def __init__(self, tmp_path: Path, validity: dt.timedelta) -> None:
        self.dir = tmp_path
        self.engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
        self.sessions = make_sessionmaker(self.engine)
        bus = EventBus()
        self.state = NodeStateWriter(self.sessions, bus)
        self.ingest = TelemetryIngest(self.sessions)
        self.hub = Hub(Settings(data_dir=tmp_path, heartbeat_interval=1), self.sessions, self.state, self.ingest,
                       LogStore(bus, 100))
        self.ca = CertificateAuthority(tmp_path / "pki", agent_validity=validity)
        self.enrollment = EnrollmentService(self.sessions, self.ca, ttl=60)
        self.certs = NodeCertificateService(self.sessions, self.ca, self.enrollment, self.hub)
        self.grpc_port, self.enroll_port = free_port(), free_port()
        self._servers: list[grpc.aio.Server] = []
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        await prepare_database(self.engine)
        pair = self.ca.server_keypair([])
        mtls, enroll = grpc.aio.server(), grpc.aio.server()
        agent_pb2_grpc.add_AgentServicer_to_server(AgentServicer(self.hub, self.certs, self.ca.cert_pem), mtls)
        mtls.add_secure_port(f"127.0.0.1:{self.grpc_port}", grpc.ssl_server_credentials(
            [(pair.key_pem, pair.cert_pem)], root_certificates=self.ca.cert_pem, require_client_auth=True))
        agent_pb2_grpc.add_EnrollmentServicer_to_server(EnrollmentServicer(self.enrollment, self.ca.cert_pem), enroll)
        enroll.add_secure_port(f"127.0.0.1:{self.enroll_port}", grpc.ssl_server_credentials(
            [(pair.key_pem, pair.cert_pem)]))
        for server in (mtls, enroll):
            await server.start()
            self._servers.append(server)
        self._tasks = [asyncio.create_task(t) for t in (self.state.run(), self.ingest.run(), self.hub.run_pusher())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(s.stop(0) for s in self._servers))
        await self.engine.dispose()

    async def add_node(self) -> str:
        """The node row and its first enrollment token."""
        async with self.sessions() as s:
            s.add(Node(uuid=NODE, name="certs", region="local", provider="local", status="running"))
            await s.flush()
            token = await self.enrollment.issue_token(s, NODE)
            await s.commit()
        return token

    async def node(self) -> Node:
        async with self.sessions() as s:
            return await s.scalar(select(Node).where(Node.uuid == NODE))

    async def connect(self, key: bytes, cert: bytes) -> grpc.StatusCode | str:
        """A Connect with this key and certificate: the first message's kind, or the refusal's status code."""
        creds = grpc.ssl_channel_credentials(self.ca.cert_pem, key, cert)
        async with grpc.aio.secure_channel(f"127.0.0.1:{self.grpc_port}", creds,
                                           options=[("grpc.ssl_target_name_override", CONTROLLER_TLS_NAME)]) as ch:
            call = agent_pb2_grpc.AgentStub(ch).Connect(
                iter([agent_pb2.AgentMessage(hello=agent_pb2.Hello(node_id=NODE, agent_version="test"))]), timeout=5)
            try:
                async for msg in call:
                    return msg.WhichOneof("kind")
            except grpc.aio.AioRpcError as exc:
                return exc.code()
        return "no message"


class Agent:
    """A real `python -m agent` process for the node."""

    def __init__(self, side: Hubside, token: str) -> None:
        self.dir = side.dir / "node"
        self.state = self.dir / "state"
        self.dir.mkdir()
        self.config = self.dir / "agent.yaml"
        self.config.write_text(yaml.safe_dump({
            "grpc_addr": f"127.0.0.1:{side.grpc_port}", "enroll_addr": f"127.0.0.1:{side.enroll_port}",
            "ca_cert_pem": side.ca.cert_pem.decode(), "state_dir": str(self.state), "enrollment_token": token,
            "node_name": "certs", "metrics_interval_seconds": 1, "reconnect_max_seconds": 1.0}))
        self.log = self.dir / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        out = open(self.log, "ab")
        try:
            return subprocess.Popen([sys.executable, "-m", "agent", "--config", str(self.config), *extra],
                                    cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            out.close()

    def start(self) -> None:
        self.proc = self.command()

    def credentials(self) -> tuple[bytes, bytes]:
        return (self.state / "agent.key").read_bytes(), (self.state / "agent.crt").read_bytes()

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    async def reenroll(self, token: str) -> int:
        """`vpnfleet-agent --reenroll` with the token in a private file (never on the command line)."""
        token_file = self.dir / "token"
        token_file.write_text(token)
        os.chmod(token_file, 0o600)
        proc = self.command("--reenroll", "--token-file", str(token_file))
        return await asyncio.to_thread(proc.wait, 30)

    def dataplane(self) -> list[int]:
        """Pids of the proxy core the agent runs for the node (it outlives the agent, like on a machine): the
        serving process only, not a passing `-test` of a config (a setpriv that has not exec'd is no "xray")."""
        return [pid for name in ("v2ray", "xray") for pid in processes_of(self.dir, name) if _runs(pid)]

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        kill_processes_of(self.dir)


def _runs(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"-test" not in argv  # `xray run -config F` / `v2ray -config F`, not their `-test` checks


async def eventually(predicate, what: str, timeout: float = 20.0):  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate() if asyncio.iscoroutinefunction(predicate) else predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def _lab(tmp_path: Path, validity: dt.timedelta) -> AsyncIterator[tuple[Hubside, Agent]]:
    side = Hubside(tmp_path, validity)
    await side.start()
    agent = Agent(side, await side.add_node())
    try:
        yield side, agent
    finally:
        agent.kill()
        await side.stop()


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[tuple[Hubside, Agent]]:
    async for pair in _lab(tmp_path, dt.timedelta(days=1)):
        yield pair


@pytest.fixture
async def short_lab(tmp_path: Path) -> AsyncIterator[tuple[Hubside, Agent]]:
    async for pair in _lab(tmp_path, dt.timedelta(seconds=24)):  # renewed ~14 s after it is issued
        yield pair


async def test_the_agent_renews_before_expiry_and_the_old_certificate_is_refused(short_lab) -> None:
    side, agent = short_lab
    agent.start()
    first = await eventually(lambda: side.hub.sessions.get(NODE), "the agent's first stream")
    dataplane = await eventually(agent.dataplane, "the node's proxy core running")
    old_key, old_cert = agent.credentials()
    old_serial = (await side.node()).cert_serial
    assert old_serial == format(x509.load_pem_x509_certificate(old_cert).serial_number, "x")

    async def renewed_and_reconnected() -> bool:
        session = side.hub.sessions.get(NODE)
        return session is not None and session.epoch > first.epoch and agent.credentials()[1] != old_cert

    await eventually(renewed_and_reconnected, "a renewal and a stream on the new certificate", timeout=40)
    key, cert = agent.credentials()
    row = await side.node()
    assert row.cert_fingerprint == fingerprint(cert) and row.cert_previous_fingerprint is None
    assert row.cert_serial == format(x509.load_pem_x509_certificate(cert).serial_number, "x") != old_serial
    for name in ("agent.key", "agent.crt"):
        assert stat.S_IMODE((agent.state / name).stat().st_mode) == 0o600
    assert await side.connect(old_key, old_cert) == grpc.StatusCode.PERMISSION_DENIED
    # the same processes carry on: nothing on the node was restarted, only the stream was replaced
    assert agent.proc.poll() is None and agent.dataplane() == dataplane
    assert "certificate renewed" in agent.text() and "Traceback" not in agent.text()


async def test_revoke_cuts_the_stream_within_a_second_and_the_next_connect_is_refused(lab) -> None:
    side, agent = lab
    agent.start()
    await eventually(lambda: side.hub.sessions.get(NODE), "the agent's stream")
    key, cert = agent.credentials()

    started = time.monotonic()
    await side.certs.revoke(NODE)
    # the stream ends with PERMISSION_DENIED, which the agent takes as final: it exits 3 at once
    code = await eventually(lambda: agent.proc.poll(), "the agent to stop", timeout=10)
    cut = time.monotonic() - started
    assert code == 3, agent.text()
    assert "certificate revoked" in agent.text()
    assert cut < 1.0 + 1.5, f"revocation took {cut:.2f}s to end the agent"  # the cut, plus process exit
    assert await side.connect(key, cert) == grpc.StatusCode.PERMISSION_DENIED


async def test_reenroll_brings_the_same_node_back(lab) -> None:
    side, agent = lab
    agent.start()
    first = await eventually(lambda: side.hub.sessions.get(NODE), "the agent's stream")
    old_key, old_cert = agent.credentials()

    # while the agent runs: the new identity replaces the old, the old stream is dropped, the agent picks up
    # the new certificate on its next connect; the old certificate is refused
    grant = await side.certs.reenroll(NODE)
    assert await agent.reenroll(grant.token) == 0, agent.text()
    assert first.closed.is_set()
    assert (agent.state / "node_id").read_text().strip() == NODE
    key, cert = agent.credentials()
    assert cert != old_cert and (await side.node()).cert_fingerprint == fingerprint(cert)
    await eventually(lambda: (s := side.hub.sessions.get(NODE)) is not None and s.epoch > first.epoch,
                     "the agent back on the new certificate")
    assert agent.proc.poll() is None
    assert await side.connect(old_key, old_cert) == grpc.StatusCode.PERMISSION_DENIED
    assert await agent.reenroll(grant.token) == 3  # single use

    # a revoked node comes back only through re-enrollment
    await side.certs.revoke(NODE)
    assert await eventually(lambda: agent.proc.poll(), "the agent to stop") == 3
    grant = await side.certs.reenroll(NODE)
    assert await agent.reenroll(grant.token) == 0, agent.text()
    agent.start()
    await eventually(lambda: side.hub.sessions.get(NODE), "the re-enrolled agent's stream")
    assert (await side.node()).cert_revoked_at is None


def test_a_missing_ca_certificate_stops_the_controller(tmp_path: Path) -> None:
    ctl = ControllerProcess(tmp_path / "data")
    try:
        ctl.start()
        ctl.stop()
        (ctl.data_dir / "pki" / "ca.crt").unlink()
        with pytest.raises(AssertionError, match="controller exited"):
            ctl.start()
        assert "ca.crt is missing but" in ctl.log() and "refusing to create a new CA" in ctl.log()
        assert not (ctl.data_dir / "pki" / "ca.crt").exists()
    finally:
        ctl.cleanup()


def test_revoke_and_reenroll_over_rest(tmp_path: Path) -> None:
    ctl = ControllerProcess(tmp_path / "data")
    try:
        ctl.start()
        paths = ctl.api.get("/openapi.json").json().get("paths", {})
        if "/api/v1/nodes/{node_id}/revoke" not in paths:
            pytest.skip("controller.routes.node_certificates is not wired into controller/app.py yet")
        nid = ctl.wait_running(ctl.create_node()["id"])["id"]
        pid = ctl.agent_pid(nid)

        r = ctl.api.post(f"/api/v1/nodes/{nid}/reenroll")
        assert r.status_code == 200, r.text
        assert r.json()["node_id"] == nid and len(r.json()["enrollment_token"]) > 20
        r = ctl.api.post(f"/api/v1/nodes/{nid}/revoke")
        assert r.status_code == 200, r.text
        assert r.json()["revoked_at"] and r.json()["serial"]
        wait_for(lambda: not os.path.exists(f"/proc/{pid}") or _zombie(pid), 10, message="the agent to stop")
        assert "certificate revoked" in (ctl.data_dir / "local-nodes" / nid / "agent.out").read_text()

        r = ctl.api.post("/api/v1/nodes/not-a-uuid/revoke")
        assert r.status_code == 404 and r.json()["error"]["message"] == "node not found: not-a-uuid"
        ctl.api.delete(f"/api/v1/nodes/{nid}")
        wait_for(lambda: ctl.node(nid)["status"] == "deleted", 20, message="deleted")
        assert ctl.api.post(f"/api/v1/nodes/{nid}/reenroll").status_code == 409
    finally:
        ctl.cleanup()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True
