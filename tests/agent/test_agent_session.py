"""The real agent process against a real grpc.aio server over real TLS (enrollment) and mTLS (Connect).

The fake controller here implements just enough of the contract to drive the agent through a node's life:
enroll, connect, apply a desired state, stream telemetry and logs, answer a command, survive a controller
restart without losing a telemetry batch, and stop cleanly.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import grpc
import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

import agent
from protos import agent_pb2, agent_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
TOKEN = "one-time-token"

pytestmark = pytest.mark.timeout(60)


class FakeController(agent_pb2_grpc.EnrollmentServicer, agent_pb2_grpc.AgentServicer):
    """Records what the agent sends; the test pushes ControllerMessages with send()."""

    def __init__(self, ca, acked_seq: int = 0, refuse_connect: bool = False) -> None:
        self.ca = ca
        self.acked_seq = acked_seq
        self.refuse_connect = refuse_connect
        self.enrolled: list[str] = []
        self.enroll_requests: list[agent_pb2.EnrollRequest] = []
        self.received: list[agent_pb2.AgentMessage] = []
        self.peer_names: list[str] = []
        self.connect_attempts = 0
        self._streams: list[asyncio.Queue] = []

    # -- Enrollment --
    async def Enroll(self, request, context):
        self.enroll_requests.append(request)
        if request.token != TOKEN:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "token is used, unknown or expired")
        node_id = str(uuid.uuid4())
        cert_pem = self.ca.sign_csr(request.csr_pem, node_id)
        self.enrolled.append(node_id)
        return agent_pb2.EnrollResponse(node_id=node_id, certificate_pem=cert_pem, ca_chain_pem=self.ca.cert_pem)

    # -- Agent --
    async def Connect(self, request_iterator, context):
        self.connect_attempts += 1
        if self.refuse_connect:
            # Like the real controller: read Hello, then refuse. Aborting before the agent's first write
            # lands races grpc.aio's client, which then reports INTERNAL "Internal error from Core"
            # instead of our status (grpc/grpc#36066), and the agent rightly retries once.
            await context.read()
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "node revoked")
        auth = context.auth_context()
        self.peer_names.extend(n.decode() for n in auth.get("x509_common_name", []))
        out: asyncio.Queue = asyncio.Queue()
        self._streams.append(out)

        async def read() -> None:
            async for message in request_iterator:
                self.received.append(message)
                if message.WhichOneof("kind") == "hello":
                    out.put_nowait(
                        agent_pb2.ControllerMessage(
                            welcome=agent_pb2.Welcome(
                                session_epoch=len(self._streams),
                                heartbeat_interval_seconds=1,
                                telemetry_acked_seq=self.acked_seq,
                                controller_version="test",
                            )
                        )
                    )

        reader = asyncio.create_task(read())
        try:
            while True:
                yield await out.get()
        finally:
            reader.cancel()

    def send(self, **kind) -> None:
        self._streams[-1].put_nowait(agent_pb2.ControllerMessage(**kind))

    def of_kind(self, kind: str) -> list:
        return [getattr(m, kind) for m in self.received if m.WhichOneof("kind") == kind]


async def start_server(controller: FakeController, ca, enroll_port: int, connect_port: int) -> grpc.aio.Server:
    server = grpc.aio.server()
    agent_pb2_grpc.add_EnrollmentServicer_to_server(controller, server)
    agent_pb2_grpc.add_AgentServicer_to_server(controller, server)
    key, cert = ca.server_key_and_cert()
    # Separate ports: a server without require_client_auth never asks for a client certificate.
    server.add_secure_port(f"127.0.0.1:{enroll_port}", grpc.ssl_server_credentials([(key, cert)]))
    server.add_secure_port(
        f"127.0.0.1:{connect_port}",
        grpc.ssl_server_credentials([(key, cert)], root_certificates=ca.cert_pem, require_client_auth=True),
    )
    await server.start()
    return server


async def eventually(predicate, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def wait_exit(proc: subprocess.Popen, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert proc.returncode is not None, "agent did not exit"
    return proc.returncode


@pytest.fixture
def ports(free_port):
    return free_port(), free_port()


@pytest.fixture
def agent_process(tmp_path):
    """Starts `python -m agent --config PATH`; every process is killed when the test ends."""
    procs: list[tuple[subprocess.Popen, object]] = []

    def start(config: dict) -> subprocess.Popen:
        path = tmp_path / "agent.yaml"
        path.write_text(yaml.safe_dump(config))
        log_file = open(tmp_path / "agent.log", "ab")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "--config", str(path)],
            cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        procs.append((proc, log_file))
        return proc

    yield start
    for proc, log_file in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        log_file.close()


def agent_config(ca, tmp_path: Path, ports, token: str = TOKEN) -> dict:
    enroll_port, connect_port = ports
    return {
        "grpc_addr": f"127.0.0.1:{connect_port}",
        "enroll_addr": f"127.0.0.1:{enroll_port}",
        "ca_cert_pem": ca.cert_pem.decode(),
        "state_dir": str(tmp_path / "state"),
        "enrollment_token": token,
        "node_name": "edge-test",
        "log_level": "info",
        "metrics_interval_seconds": 1,
        "spool_max_batches": 1000,
        "log_buffer_lines": 1000,
        "reconnect_max_seconds": 1.0,
    }


def agent_log(tmp_path: Path) -> str:
    return (tmp_path / "agent.log").read_text(errors="replace")


async def test_node_life_enroll_stream_apply_command_and_controller_restart(throwaway_ca, tmp_path, ports, agent_process):
    controller = FakeController(throwaway_ca)
    server = await start_server(controller, throwaway_ca, *ports)
    listener = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    try:
        proc = agent_process(agent_config(throwaway_ca, tmp_path, ports))

        # Enrollment, then Hello over mTLS with the new identity.
        hellos = await eventually(lambda: controller.of_kind("hello"), "Hello")
        state = tmp_path / "state"
        node_id = controller.enrolled[0]
        assert controller.enroll_requests[0].agent_version == agent.__version__
        assert stat.S_IMODE((state / "agent.key").stat().st_mode) == 0o600
        cert = x509.load_pem_x509_certificate((state / "agent.crt").read_bytes())
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == node_id
        assert (state / "node_id").read_text().strip() == node_id
        assert TOKEN not in agent_log(tmp_path)
        hello = hellos[0]
        assert hello.node_id == node_id
        assert controller.peer_names == [node_id]
        assert hello.agent_version == agent.__version__
        assert {"agent-settings", "tcping", "info"} <= set(hello.capabilities)
        assert hello.boot_id == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        assert hello.applied_revision == 0
        assert hello.hostname == socket.gethostname()

        # Desired state: applied and reported; a bad one fails and changes nothing.
        # allow_private_targets: the tcping below targets this test's own loopback listener
        settings = agent_pb2.AgentSettings(metrics_interval_seconds=1, log_level="debug", allow_private_targets=True)
        controller.send(desired_state=agent_pb2.DesiredState(revision=3, agent=settings))
        report = await eventually(
            lambda: next((r for r in controller.of_kind("applied") if r.attempted_revision == 3), None), "report 3"
        )
        assert report.revision == 3
        component = next(c for c in report.components if c.name == "agent")
        assert (component.name, component.state) == ("agent", agent_pb2.ComponentStatus.OK)
        assert component.config_hash == hashlib.sha256(settings.SerializeToString(deterministic=True)).hexdigest()
        controller.send(desired_state=agent_pb2.DesiredState(
            revision=4, agent=agent_pb2.AgentSettings(metrics_interval_seconds=0, log_level="shouty")))
        bad = await eventually(
            lambda: next((r for r in controller.of_kind("applied") if r.attempted_revision == 4), None), "report 4"
        )
        assert bad.revision == 3
        assert bad.components[0].state == agent_pb2.ComponentStatus.FAILED
        assert "log_level" in bad.components[0].error

        # A command, answered on the same stream.
        port = listener.sockets[0].getsockname()[1]
        controller.send(command=agent_pb2.Command(
            id="cmd-1", timeout_ms=2000, tcping=agent_pb2.TcpingRequest(target=f"127.0.0.1:{port}")))
        result = await eventually(
            lambda: next((r for r in controller.of_kind("command_result") if r.id == "cmd-1"), None), "tcping"
        )
        assert result.error == "" and result.tcping.connected and result.tcping.target == f"127.0.0.1:{port}"

        # Telemetry in increasing sequence, logs, heartbeats.
        batches = await eventually(lambda: len(controller.of_kind("telemetry")) >= 3 and controller.of_kind("telemetry"), "telemetry")
        seqs = [b.seq for b in batches]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) and seqs[0] == 1
        assert all(len(b.metrics) == 1 and b.metrics[0].mem_total > 0 for b in batches)
        logs = await eventually(lambda: controller.of_kind("logs"), "log batch")
        lines = [line for batch in logs for line in batch.lines]
        assert any(line.source == "agent" and "connected" in line.message for line in lines)
        assert await eventually(lambda: controller.of_kind("heartbeat"), "heartbeat")

        # Ack the first two batches: the agent forgets them.
        acked = 2
        controller.send(telemetry_ack=agent_pb2.TelemetryAck(acked_seq=acked))
        spool = state / "spool"
        await eventually(lambda: not (spool / f"{1:020d}.pb").exists() and not (spool / f"{2:020d}.pb").exists(), "ack")

        # The controller goes away; the agent keeps sampling into its spool.
        await server.stop(grace=None)
        sent_before = max(b.seq for b in controller.of_kind("telemetry"))
        await asyncio.sleep(2.5)
        assert proc.poll() is None

        # Same port, new controller that has stored up to `acked`: nothing after it may be missing.
        restarted = FakeController(throwaway_ca, acked_seq=acked)
        server = await start_server(restarted, throwaway_ca, *ports)
        hello2 = (await eventually(lambda: restarted.of_kind("hello"), "reconnect", timeout=15))[0]
        assert hello2.node_id == node_id
        assert hello2.applied_revision == 3
        assert hello2.telemetry_seq >= sent_before + 1
        report2 = await eventually(lambda: restarted.of_kind("applied"), "report after Hello")
        assert report2[0].revision == 3
        want = set(range(acked + 1, hello2.telemetry_seq + 1))
        await eventually(lambda: want <= {b.seq for b in restarted.of_kind("telemetry")}, "re-sent telemetry")
        resent = [b.seq for b in restarted.of_kind("telemetry")]
        assert resent[0] == acked + 1
        assert resent == list(range(acked + 1, acked + 1 + len(resent)))  # oldest first, no gap, no repeat
        assert not restarted.enroll_requests  # enrolled once, for good

        # Node info, then Shutdown: the agent closes the stream and comes back with a new Hello.
        restarted.send(command=agent_pb2.Command(id="cmd-2", timeout_ms=3000, info=agent_pb2.InfoRequest()))
        info = await eventually(
            lambda: next((r for r in restarted.of_kind("command_result") if r.id == "cmd-2"), None), "info"
        )
        assert info.error == "" and info.info.alias == "edge-test" and info.info.log == "debug"
        assert info.info.key == str(state / "agent.key") and info.info.crt == str(state / "agent.crt")
        restarted.send(shutdown=agent_pb2.Shutdown(reason="controller restarting"))
        await eventually(lambda: len(restarted.of_kind("hello")) >= 2, "Hello after Shutdown")
        assert proc.poll() is None

        # SIGTERM: clean exit.
        proc.send_signal(signal.SIGTERM)
        assert await wait_exit(proc, 10) == 0
    finally:
        listener.close()
        await server.stop(grace=None)


async def test_refused_enrollment_exits_with_code_3(throwaway_ca, tmp_path, ports, agent_process):
    controller = FakeController(throwaway_ca)
    server = await start_server(controller, throwaway_ca, *ports)
    try:
        proc = agent_process(agent_config(throwaway_ca, tmp_path, ports, token="stolen-token"))
        assert await wait_exit(proc, 15) == 3
        assert len(controller.enroll_requests) == 1  # refused is final: no retry storm
        assert not (tmp_path / "state" / "agent.crt").exists()
        assert "enrollment refused" in agent_log(tmp_path)
        assert "stolen-token" not in agent_log(tmp_path)
    finally:
        await server.stop(grace=None)


async def test_refused_certificate_exits_with_code_3(throwaway_ca, tmp_path, ports, agent_process):
    controller = FakeController(throwaway_ca, refuse_connect=True)
    server = await start_server(controller, throwaway_ca, *ports)
    try:
        proc = agent_process(agent_config(throwaway_ca, tmp_path, ports))
        assert await wait_exit(proc, 15) == 3
        assert controller.enrolled and controller.connect_attempts == 1, agent_log(tmp_path)  # no retry storm
    finally:
        await server.stop(grace=None)


async def test_sigterm_while_the_controller_is_unreachable_exits_0(throwaway_ca, tmp_path, ports, agent_process):
    proc = agent_process(agent_config(throwaway_ca, tmp_path, ports))
    await asyncio.sleep(1.5)  # retrying enrollment against nothing
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert await wait_exit(proc, 10) == 0


def test_config_error_exits_with_code_2(throwaway_ca, tmp_path, ports, agent_process):
    config = agent_config(throwaway_ca, tmp_path, ports)
    config["metrics_interval_seconds"] = 0
    proc = agent_process(config)
    assert proc.wait(timeout=15) == 2
    assert "metrics_interval_seconds" in agent_log(tmp_path)
