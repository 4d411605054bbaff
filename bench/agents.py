#!/usr/bin/env python3
"""Load benchmark: N simulated agents in one process against a real ``vpnfleet-controller`` subprocess.

Every simulated agent does what the real one does on the wire: EC P-256 key + CSR -> Enrollment.Enroll over
server TLS (CA pinned, target name "vpnfleet-controller") -> Agent.Connect over mutual TLS with its own
certificate and its own channel -> Hello / Welcome -> heartbeats (10 s, +-20 % jitter) and one TelemetryBatch
every 10 s; every DesiredState is answered with an AppliedReport. Timers are staggered uniformly over the
interval. Nodes and enrollment tokens are written into the controller's database before it starts.

Measured: time to enroll and connect all agents; controller CPU (% of one core) and RSS over a steady-state
window; messages/s the agents delivered; telemetry acknowledged; then ``--rounds`` fleet-wide desired-state
changes (PUT /api/v1/fleet/agent-settings): per-agent latency from the PUT to the AppliedReport being sent,
and the time until GET /api/v1/nodes shows every node in sync. See bench/README.md.

    .venv/bin/python bench/agents.py --agents 1000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import datetime as dt
import hashlib
import math
import os
import random
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

_QUIET_GRPC = "GRPC_VERBOSITY" not in os.environ
if _QUIET_GRPC:
    os.environ["GRPC_VERBOSITY"] = "ERROR"  # 5,000 channels closing would each log a line

import grpc  # noqa: E402
import httpx
import psutil
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from controller.db import make_engine, make_sessionmaker, prepare_database  # noqa: E402
from controller.models import EnrollmentToken, Node, utcnow  # noqa: E402
from controller.services.enrollment import hash_token  # noqa: E402
from protos import agent_pb2, agent_pb2_grpc  # noqa: E402

from figures import log, mib, pct  # noqa: E402 - bench/ is on sys.path when run as a script

TLS_NAME = "vpnfleet-controller"
INTERVAL = 10.0  # heartbeat and telemetry interval (the controller is started with the same heartbeat)
AGENT_VERSION = "bench-0"
CAPABILITIES = ["agent-settings", "tcping", "info"]
#: pause between two passes over GET /api/v1/nodes while waiting for "all in sync" (each pass costs the
#: controller real CPU: 500 nodes serialized per page)
API_POLL_PAUSE = 0.2


# -- statistics helpers ---------------------------------------------------------------------------------------

# -- shared counters ------------------------------------------------------------------------------------------

@dataclass
class Stats:
    sent: Counter = field(default_factory=Counter)  # AgentMessage kinds written to the streams
    received: Counter = field(default_factory=Counter)  # ControllerMessage kinds read from the streams
    ack_latency: list[float] = field(default_factory=list)  # telemetry batch sent -> acknowledged (s)
    record_ack_latency: bool = False
    stream_errors: Counter = field(default_factory=Counter)
    write_errors: int = 0


class ApplyTracker:
    """Wakes the bench when every agent has applied (at least) the target revision."""

    def __init__(self) -> None:
        self.target = 0
        self.remaining: set[int] = set()
        self.done = asyncio.Event()

    def expect(self, target: int, agents: list["SimAgent"]) -> None:
        self.target = target
        self.remaining = {a.index for a in agents if a.applied_revision < target}
        self.done = asyncio.Event()
        if not self.remaining:
            self.done.set()

    def applied(self, agent: "SimAgent") -> None:
        if agent.applied_revision >= self.target and agent.index in self.remaining:
            self.remaining.discard(agent.index)
            if not self.remaining:
                self.done.set()


# -- one simulated agent --------------------------------------------------------------------------------------

class SimAgent:
    def __init__(self, index: int, n: int, token: str, stats: Stats, tracker: ApplyTracker) -> None:
        self.index = index
        self.phase = index / n * INTERVAL  # uniform stagger of the 10 s timers
        self.token = token
        self.stats = stats
        self.tracker = tracker
        self.rng = random.Random(index)
        self.node_id = ""
        self.key_pem = b""
        self.cert_pem = b""
        self.ca_pem = b""
        self.channel: grpc.aio.Channel | None = None
        self.call: grpc.aio.StreamStreamCall | None = None
        self.write_lock = asyncio.Lock()
        self.tasks: list[asyncio.Task] = []
        self.applied_revision = 0
        self.applied_at: dict[int, float] = {}  # revision -> monotonic time its AppliedReport was written
        self.seq = 0  # telemetry batches produced
        self.acked = 0  # highest telemetry seq acknowledged
        self.unacked: dict[int, float] = {}  # seq -> send time
        self.welcome_at = 0.0
        self.alive = False

    # enrollment: a fresh key and CSR, one Enroll over server-authenticated TLS (CA pinned)
    async def enroll(self, enroll_addr: str, ca_pem: bytes) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        self.key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"bench-{self.index}")]))
               .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
        options = [("grpc.ssl_target_name_override", TLS_NAME), ("grpc.use_local_subchannel_pool", 1)]
        async with grpc.aio.secure_channel(enroll_addr, grpc.ssl_channel_credentials(root_certificates=ca_pem),
                                           options=options) as channel:
            resp = await agent_pb2_grpc.EnrollmentStub(channel).Enroll(
                agent_pb2.EnrollRequest(token=self.token, csr_pem=csr, agent_version=AGENT_VERSION), timeout=60)
        self.node_id, self.cert_pem, self.ca_pem = resp.node_id, resp.certificate_pem, resp.ca_chain_pem or ca_pem

    # session: own mTLS channel, Hello -> Welcome, then a reader task and a timer task
    async def connect(self, grpc_addr: str, t_base: float) -> None:
        creds = grpc.ssl_channel_credentials(root_certificates=self.ca_pem, private_key=self.key_pem,
                                             certificate_chain=self.cert_pem)
        options = [("grpc.ssl_target_name_override", TLS_NAME), ("grpc.use_local_subchannel_pool", 1),
                   ("grpc.keepalive_time_ms", 360_000), ("grpc.keepalive_timeout_ms", 20_000)]
        self.channel = grpc.aio.secure_channel(grpc_addr, creds, options=options)
        self.call = agent_pb2_grpc.AgentStub(self.channel).Connect()
        await self.call.write(agent_pb2.AgentMessage(hello=agent_pb2.Hello(
            node_id=self.node_id, agent_version=AGENT_VERSION, capabilities=CAPABILITIES,
            boot_id=str(uuid.UUID(int=self.index)), applied_revision=self.applied_revision,
            telemetry_seq=self.seq, hostname=f"bench-{self.index}")))
        self.stats.sent["hello"] += 1
        first = await asyncio.wait_for(self.call.read(), 60)
        if first is grpc.aio.EOF or first.WhichOneof("kind") != "welcome":
            raise ConnectionError(f"expected Welcome, got {first!r}")
        self.stats.received["welcome"] += 1
        self.welcome_at = time.monotonic()
        self.alive = True
        self.tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._timers(t_base))]

    async def _send(self, msg: agent_pb2.AgentMessage, kind: str) -> bool:
        if not self.alive:
            return False
        try:
            async with self.write_lock:  # grpc allows one outstanding write per call
                await self.call.write(msg)
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError) as exc:
            self.stats.write_errors += 1
            self._lost(f"write: {type(exc).__name__}")
            return False
        self.stats.sent[kind] += 1
        return True

    def _lost(self, reason: str) -> None:
        if self.alive:
            self.alive = False
            self.stats.stream_errors[reason] += 1

    async def _read(self) -> None:
        try:
            while True:
                msg = await self.call.read()
                if msg is grpc.aio.EOF:
                    self._lost("stream ended by controller")
                    return
                kind = msg.WhichOneof("kind")
                self.stats.received[kind] += 1
                if kind == "desired_state":
                    await self._apply(msg.desired_state)
                elif kind == "telemetry_ack":
                    self._ack(msg.telemetry_ack.acked_seq)
                elif kind == "shutdown":
                    self._lost("controller shutdown")
                    return
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as exc:
            self._lost(f"read: {exc.code().name}")

    async def _apply(self, desired: agent_pb2.DesiredState) -> None:
        """Like the real agent: a newer revision is applied and reported; an older one re-reports."""
        new = desired.revision > self.applied_revision
        if new:
            self.applied_revision = desired.revision
        config_hash = hashlib.sha256(desired.agent.SerializeToString(deterministic=True)).hexdigest()
        report = agent_pb2.AppliedReport(
            revision=self.applied_revision, attempted_revision=desired.revision,
            components=[agent_pb2.ComponentStatus(name="agent", state=agent_pb2.ComponentStatus.OK,
                                                  config_hash=config_hash)])
        if await self._send(agent_pb2.AgentMessage(applied=report), "applied") and new:
            self.applied_at[desired.revision] = time.monotonic()
            self.tracker.applied(self)

    def _ack(self, seq: int) -> None:
        if seq <= self.acked:
            return
        self.acked = seq
        now = time.monotonic()
        for s in [s for s in self.unacked if s <= seq]:
            sent = self.unacked.pop(s)
            if self.stats.record_ack_latency:
                self.stats.ack_latency.append(now - sent)

    def _sample(self) -> agent_pb2.MetricSample:
        gib = 1 << 30
        return agent_pb2.MetricSample(
            ts_ms=int(time.time() * 1000), cpu_percent=self.rng.uniform(1, 30), mem_total=2 * gib,
            mem_used=int(self.rng.uniform(0.3, 0.6) * gib), swap_total=0, swap_used=0, disk_total=20 * gib,
            disk_used=5 * gib, net_rx_bytes=self.rng.randrange(1 << 20), net_tx_bytes=self.rng.randrange(1 << 20),
            load1=0.3, load5=0.2, load15=0.1, uptime_seconds=int(time.monotonic()))

    async def _timers(self, t_base: float) -> None:
        """Heartbeat at phase (then every 10 s +-20 %), telemetry at phase + 5 s (then every 10 s)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        first = t_base + self.phase
        first += math.ceil(max(0.0, now - first) / INTERVAL) * INTERVAL
        next_hb, next_tel = first, first + INTERVAL / 2
        if next_tel - INTERVAL > now:
            next_tel -= INTERVAL
        while self.alive:
            await asyncio.sleep(max(0.0, min(next_hb, next_tel) - loop.time()))
            if next_hb <= next_tel:
                next_hb += INTERVAL * self.rng.uniform(0.8, 1.2)
                await self._send(agent_pb2.AgentMessage(heartbeat=agent_pb2.Heartbeat(
                    sent_at_ms=int(time.time() * 1000), applied_revision=self.applied_revision)), "heartbeat")
            else:
                next_tel += INTERVAL
                self.seq += 1
                self.unacked[self.seq] = time.monotonic()
                await self._send(agent_pb2.AgentMessage(telemetry=agent_pb2.TelemetryBatch(
                    seq=self.seq, metrics=[self._sample()])), "telemetry")

    async def close(self) -> None:
        self.alive = False
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.call is not None:
            self.call.cancel()
        if self.channel is not None:
            await self.channel.close()


# -- the controller under test ----------------------------------------------------------------------------------

def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


async def seed_database(data_dir: Path, n: int) -> list[str]:
    """Create the schema, N nodes (provider "bench": no driver or sync touches them) and one token each."""
    engine = make_engine(f"sqlite+aiosqlite:///{data_dir / 'vpnfleet.db'}")
    try:
        await prepare_database(engine)
        tokens = [secrets.token_urlsafe(32) for _ in range(n)]
        expires = utcnow() + dt.timedelta(hours=1)
        uuids = [str(uuid.uuid4()) for _ in range(n)]
        async with make_sessionmaker(engine)() as s:
            s.add_all([Node(uuid=u, name=f"bench-{i}", region="local", region_name="Local", provider="bench",
                            instance_id=f"bench-{i}", status="running") for i, u in enumerate(uuids)])
            await s.flush()  # nodes first: the tokens' foreign key points at nodes.uuid
            s.add_all([EnrollmentToken(node_uuid=u, token_hash=hash_token(t), expires_at=expires)
                       for u, t in zip(uuids, tokens)])
            await s.commit()
        return tokens
    finally:
        await engine.dispose()


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ControllerProcess:
    def __init__(self, data_dir: Path, profile: str | None, command: str | None) -> None:
        http_port, grpc_port, enroll_port = free_ports(3)
        self.data_dir = data_dir
        self.http_url = f"http://127.0.0.1:{http_port}"
        self.grpc_addr = f"127.0.0.1:{grpc_port}"
        self.enroll_addr = f"127.0.0.1:{enroll_port}"
        self.log_path = data_dir / "controller.log"
        env = {**os.environ, "VPNFLEET_DATA_DIR": str(data_dir), "VPNFLEET_HTTP_ADDR": f"127.0.0.1:{http_port}",
               "VPNFLEET_GRPC_ADDR": self.grpc_addr, "VPNFLEET_ENROLL_ADDR": self.enroll_addr,
               "VPNFLEET_HEARTBEAT_INTERVAL": str(int(INTERVAL)), "VPNFLEET_INSTANCE_SYNC_INTERVAL": "3600",
               "VPNFLEET_LOG_LEVEL": "warning", "PYTHONUNBUFFERED": "1",
               # the bench drives the API far past the default 1,000 requests a minute per key
               "VPNFLEET_RATE_LIMIT_AUTHENTICATED": "10000000", "VPNFLEET_RATE_LIMIT_ANONYMOUS": "10000000"}
        env.pop("VPNFLEET_CONFIG", None)
        if _QUIET_GRPC:
            env.pop("GRPC_VERBOSITY", None)  # the controller logs as it would anywhere else
        if command:
            cmd = shlex.split(command)
        elif profile:
            cmd = [sys.executable, str(Path(__file__).with_name("_profiled_controller.py")), profile]
        else:
            cmd = [sys.executable, "-m", "controller.main"]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        self.ps = psutil.Process(self.proc.pid)

    async def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.http_url, timeout=2.0) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"controller exited with {self.proc.returncode}:\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/api/v1/health")).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise TimeoutError(f"controller not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def admin_key(self) -> str:
        return (self.data_dir / "admin.key").read_text().strip()

    def ca_pem(self) -> bytes:
        return (self.data_dir / "pki" / "ca.crt").read_bytes()

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


# -- resource sampling --------------------------------------------------------------------------------------------

def cpu_total(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


@dataclass
class Sample:
    t: float
    ctl_cpu: float
    bench_cpu: float


class Sampler:
    """1 s samples of controller and bench CPU time, plus the bench event loop's lag every 50 ms."""

    def __init__(self, ctl: psutil.Process) -> None:
        self.ctl = ctl
        self.me = psutil.Process()
        self.samples: list[Sample] = []
        self.lags: list[tuple[float, float]] = []
        self.ctl_rss_max = 0

    def take(self) -> Sample:
        s = Sample(time.monotonic(), cpu_total(self.ctl), cpu_total(self.me))
        self.samples.append(s)
        self.ctl_rss_max = max(self.ctl_rss_max, self.ctl.memory_info().rss)
        return s

    async def run(self) -> None:
        while True:
            self.take()
            await asyncio.sleep(1.0)

    async def run_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(0.05)
            self.lags.append((time.monotonic(), loop.time() - t - 0.05))

    def per_second(self, t0: float, t1: float, attr: str) -> list[float]:
        pts = [s for s in self.samples if t0 <= s.t <= t1]
        return [100 * (getattr(b, attr) - getattr(a, attr)) / (b.t - a.t) for a, b in zip(pts, pts[1:])]

    def lag(self, t0: float, t1: float) -> list[float]:
        return [lag for t, lag in self.lags if t0 <= t <= t1]


def thread_times(p: psutil.Process) -> dict[int, tuple[str, float]]:
    out = {}
    for th in p.threads():
        try:
            name = Path(f"/proc/{p.pid}/task/{th.id}/comm").read_text().strip()
        except OSError:
            name = "?"
        if th.id == p.pid:
            name = "main (asyncio loop)"
        out[th.id] = (name, th.user_time + th.system_time)
    return out


def thread_breakdown(before: dict, after: dict, seconds: float) -> str:
    by_name: Counter = Counter()
    for tid, (name, t1) in after.items():
        t0 = before.get(tid, (name, 0.0))[1]
        by_name[name] += (t1 - t0) / seconds * 100
    return ", ".join(f"{name} {v:.1f}%" for name, v in by_name.most_common(6) if v >= 0.05) or "-"


# -- the benchmark ------------------------------------------------------------------------------------------------

async def run_phase(agents: list[SimAgent], fn, concurrency: int, what: str) -> tuple[float, int]:
    """Run fn(agent) for every agent with bounded concurrency; returns (seconds, failures)."""
    sem = asyncio.Semaphore(concurrency)
    failures: Counter = Counter()
    done = 0
    t0 = time.monotonic()

    async def one(a: SimAgent) -> None:
        nonlocal done
        async with sem:
            for attempt in range(3):
                try:
                    await fn(a)
                    break
                except (grpc.aio.AioRpcError, ConnectionError, asyncio.TimeoutError) as exc:
                    code = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else type(exc).__name__
                    failures[code] += 1
                    if attempt == 2:
                        return
                    await asyncio.sleep(0.5 * (attempt + 1))
        done += 1
        if done % max(1, len(agents) // 5) == 0:
            log(f"  {what}: {done}/{len(agents)} ({time.monotonic() - t0:.1f} s)")

    await asyncio.gather(*(one(a) for a in agents))
    if failures:
        log(f"  {what}: failed attempts {dict(failures)}")
    return time.monotonic() - t0, len(agents) - done


async def api_all_in_sync(http: httpx.AsyncClient, n: int, target: int) -> bool:
    """One pass over GET /api/v1/nodes (500 per page); stops at the first node not in sync at target."""
    page, seen = 1, 0
    while True:
        resp = await http.get("/api/v1/nodes", params={"size": 500, "page": page})
        resp.raise_for_status()
        body = resp.json()
        for item in body["items"]:
            agent = item["agent"]
            if agent["desired_revision"] < target or agent["applied_revision"] != agent["desired_revision"]:
                return False
            seen += 1
        if page >= body["pages"]:
            return seen >= n
        page += 1


async def bench(args: argparse.Namespace, data_dir: Path, state: dict) -> None:
    n = args.agents
    log(f"seeding {n} nodes and enrollment tokens into {data_dir}")
    tokens = await seed_database(data_dir, n)

    ctl = ControllerProcess(data_dir, args.profile_controller, args.controller_cmd)
    state["ctl"] = ctl
    log(f"controller pid {ctl.proc.pid}: http {ctl.http_url}, grpc {ctl.grpc_addr}, enroll {ctl.enroll_addr}")
    await ctl.wait_ready()
    ca_pem = ctl.ca_pem()
    sampler = Sampler(ctl.ps)
    bg = [asyncio.create_task(sampler.run()), asyncio.create_task(sampler.run_lag())]
    state["bg"] = bg
    http = httpx.AsyncClient(base_url=ctl.http_url, headers={"X-API-Key": ctl.admin_key()}, timeout=30.0)
    state["http"] = http

    stats, tracker = Stats(), ApplyTracker()
    agents = [SimAgent(i, n, tok, stats, tracker) for i, tok in enumerate(tokens)]
    state["agents"] = agents

    log(f"enrolling {n} agents (concurrency {args.concurrency})")
    t_enroll, failed = await run_phase(agents, lambda a: a.enroll(ctl.enroll_addr, ca_pem), args.concurrency,
                                       "enrolled")
    if failed:
        raise RuntimeError(f"{failed} agents could not enroll:\n{ctl.log_tail()}")

    log(f"connecting {n} agents (concurrency {args.concurrency})")
    tracker.expect(1, agents)  # every node starts at desired revision 1; agents say Hello with 0
    t_base = asyncio.get_running_loop().time()
    cpu_c0 = sampler.take()
    t_connect, failed = await run_phase(agents, lambda a: a.connect(ctl.grpc_addr, t_base), args.concurrency,
                                        "connected")
    if failed:
        raise RuntimeError(f"{failed} agents could not connect:\n{ctl.log_tail()}")
    connect_span = max(a.welcome_at for a in agents) - cpu_c0.t
    try:
        await asyncio.wait_for(tracker.done.wait(), 60)
    except asyncio.TimeoutError:
        raise RuntimeError(f"{len(tracker.remaining)} agents never got their first desired state") from None
    t_initial = time.monotonic() - cpu_c0.t
    cpu_c1 = sampler.take()
    log(f"all connected in {connect_span:.1f} s, initial desired state applied by all after {t_initial:.1f} s; "
        f"warming up {args.warmup:.0f} s")
    await asyncio.sleep(args.warmup)

    # -- steady state -------------------------------------------------------------------------------------
    log(f"steady-state window {args.window:.0f} s")
    if args.profile_controller:
        ctl.signal(signal.SIGUSR1)
    stats.record_ack_latency = True
    sent0, recv0 = Counter(stats.sent), Counter(stats.received)
    threads0 = thread_times(ctl.ps)
    w0 = sampler.take()
    await asyncio.sleep(args.window)
    w1 = sampler.take()
    threads1 = thread_times(ctl.ps)
    sent1, recv1 = Counter(stats.sent), Counter(stats.received)
    stats.record_ack_latency = False
    if args.profile_controller:
        ctl.signal(signal.SIGUSR2)
    seq_at_end = {a.index: a.seq for a in agents}
    ctl_rss = ctl.ps.memory_info().rss
    bench_rss = psutil.Process().memory_info().rss
    await asyncio.sleep(3.0)  # let acknowledgements of the last batches arrive
    acked = sum(min(a.acked, seq_at_end[a.index]) for a in agents)
    produced = sum(seq_at_end.values())
    span = w1.t - w0.t
    ctl_cpu = 100 * (w1.ctl_cpu - w0.ctl_cpu) / span
    bench_cpu = 100 * (w1.bench_cpu - w0.bench_cpu) / span
    ctl_per_s = sampler.per_second(w0.t, w1.t, "ctl_cpu")
    window_sent = sent1 - sent0
    window_recv = recv1 - recv0
    window_lag = sampler.lag(w0.t, w1.t)

    # -- desired-state changes -----------------------------------------------------------------------------
    latencies: list[float] = []
    per_round: list[str] = []
    api_sync: list[float] = []
    missing = 0
    base = max(a.applied_revision for a in agents)
    levels = ["warning", "info"]
    round_ctl_cpu: list[float] = []
    r0 = sampler.take()
    if args.profile_controller:
        ctl.signal(signal.SIGUSR1)
    for r in range(args.rounds):
        await asyncio.sleep(2.0 + random.random())
        target = base + r + 1
        tracker.expect(target, agents)
        c0 = cpu_total(ctl.ps)
        t_put = time.monotonic()
        resp = await http.put("/api/v1/fleet/agent-settings", json={"log_level": levels[r % 2]})
        t_put_done = time.monotonic()
        resp.raise_for_status()
        try:
            await asyncio.wait_for(tracker.done.wait(), args.change_timeout)
        except asyncio.TimeoutError:
            log(f"  round {r + 1}: {len(tracker.remaining)} agents did not apply revision {target} "
                f"within {args.change_timeout:.0f} s")
        lat = []
        for a in agents:
            ts = [t for rev, t in a.applied_at.items() if rev >= target]
            if ts:
                lat.append(min(ts) - t_put)
            else:
                missing += 1
        latencies.extend(lat)
        t_sync = math.nan
        deadline = time.monotonic() + args.change_timeout
        while time.monotonic() < deadline:
            if await api_all_in_sync(http, n, target):
                t_sync = time.monotonic() - t_put
                break
            await asyncio.sleep(API_POLL_PAUSE)
        api_sync.append(t_sync)
        round_ctl_cpu.append(cpu_total(ctl.ps) - c0)
        per_round.append(f"  round {r + 1}: rev {target}  PUT {1000 * (t_put_done - t_put):.0f} ms  "
                         f"p50 {pct(lat, 50):.3f} s  p99 {pct(lat, 99):.3f} s  max {max(lat, default=math.nan):.3f} s"
                         f"  API in sync {t_sync:.2f} s  controller CPU {round_ctl_cpu[-1]:.2f} s")
        log(per_round[-1].strip())
    if args.profile_controller:
        ctl.signal(signal.SIGUSR2)
    r1 = sampler.take()
    rounds_lag = sampler.lag(r0.t, r1.t)
    rounds_bench_cpu = 100 * (r1.bench_cpu - r0.bench_cpu) / (r1.t - r0.t)

    # -- report ----------------------------------------------------------------------------------------------
    hb, tel = window_sent["heartbeat"] / span, window_sent["telemetry"] / span
    other = sum(v for k, v in window_sent.items() if k not in ("heartbeat", "telemetry")) / span
    acks_s = window_recv["telemetry_ack"] / span
    ack_lat = stats.ack_latency
    synced = [t for t in api_sync if not math.isnan(t)]
    api_text = (f"{statistics.median(synced):.2f} s (median; max {max(synced):.2f} s)" if synced else "never")
    if len(synced) < len(api_sync):
        api_text += (f", NOT within {args.change_timeout:.0f} s in {len(api_sync) - len(synced)} "
                     f"of {len(api_sync)} rounds")
    lines = [
        "",
        "=" * 100,
        f"agents: {n}   enroll all: {t_enroll:.1f} s   connect all: {connect_span:.1f} s "
        f"(initial state applied by all: {t_initial:.1f} s, controller CPU "
        f"{cpu_c1.ctl_cpu - cpu_c0.ctl_cpu:.1f} s)   steady window: {span:.0f} s",
        f"controller CPU: {ctl_cpu:.1f} % of one core (p50 over 1 s samples {pct(ctl_per_s, 50):.1f}, "
        f"max {max(ctl_per_s, default=math.nan):.1f})   RSS: {mib(ctl_rss):.0f} MiB "
        f"(max seen {mib(sampler.ctl_rss_max):.0f})",
        f"controller threads (window): {thread_breakdown(threads0, threads1, span)}",
        f"ingested: {hb + tel + other:.1f} msg/s (heartbeats {hb:.1f}, telemetry {tel:.1f}, other {other:.1f}), "
        f"telemetry acked: {100 * acked / produced if produced else math.nan:.1f}% "
        f"({acks_s:.1f} acks/s, ack latency p50 {1000 * pct(ack_lat, 50):.0f} ms p99 {1000 * pct(ack_lat, 99):.0f} ms)",
        f"desired-state change ({args.rounds} rounds x {n} agents): p50 {pct(latencies, 50):.2f} s  "
        f"p99 {pct(latencies, 99):.2f} s  max {max(latencies, default=math.nan):.2f} s"
        f"{f'  MISSING {missing}' if missing else ''} ; API all in sync: {api_text}",
        *per_round,
        f"bench process: CPU {bench_cpu:.0f} % (during changes {rounds_bench_cpu:.0f} %) RSS {mib(bench_rss):.0f} MiB;"
        f" event-loop lag p99 {1000 * pct(window_lag, 99):.0f} ms (during changes {1000 * pct(rounds_lag, 99):.0f} ms,"
        f" max {1000 * max(rounds_lag, default=math.nan):.0f} ms)",
        f"streams lost: {sum(stats.stream_errors.values())} {dict(stats.stream_errors) or ''}  "
        f"write errors: {stats.write_errors}",
        "=" * 100,
    ]
    print("\n".join(lines), flush=True)
    if args.profile_controller:
        print(f"controller profiles: {args.profile_controller}-steady.prof, {args.profile_controller}-rounds.prof "
              f"(python -m pstats)", flush=True)


async def amain(args: argparse.Namespace, data_dir: Path, state: dict) -> None:
    try:
        await asyncio.wait_for(bench(args, data_dir, state), args.timeout)
    except asyncio.TimeoutError:
        log(f"benchmark did not finish within {args.timeout:.0f} s")
        state["failed"] = True
    finally:
        agents = state.get("agents") or []
        if agents:
            log(f"closing {len(agents)} channels")
            t_close = time.monotonic()
            for a in agents:
                a.alive = False  # stop every timer first, then tear the streams down
            await asyncio.gather(*(a.close() for a in agents), return_exceptions=True)
            log(f"closed in {time.monotonic() - t_close:.1f} s")
        if state.get("http") is not None:
            await state["http"].aclose()
        for task in state.get("bg", []):
            task.cancel()
        await asyncio.gather(*state.get("bg", []), return_exceptions=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=1000, help="simulated agents (default 1000)")
    p.add_argument("--window", type=float, default=30.0, help="steady-state window, seconds (default 30)")
    p.add_argument("--rounds", type=int, default=5, help="desired-state changes to measure (default 5)")
    p.add_argument("--keep", action="store_true", help="keep the data dir (database, controller.log, pki)")
    p.add_argument("--warmup", type=float, default=INTERVAL, help="seconds between connect and window (default 10)")
    p.add_argument("--concurrency", type=int, default=100, help="concurrent enrollments/connects (default 100)")
    p.add_argument("--change-timeout", type=float, default=60.0, help="per round, seconds (default 60)")
    p.add_argument("--timeout", type=float, default=1200.0, help="overall limit, seconds (default 1200)")
    p.add_argument("--profile-controller", metavar="PREFIX",
                   help="run the controller under cProfile (main thread) during the window and the rounds; "
                        "writes PREFIX-steady.prof and PREFIX-rounds.prof (inflates its CPU figures)")
    p.add_argument("--controller-cmd", metavar="CMD",
                   help="start the controller with this command instead of 'python -m controller.main' "
                        "(e.g. to compare a modified controller; it gets the same VPNFLEET_* environment)")
    args = p.parse_args(argv)
    if args.profile_controller:
        args.profile_controller = str(Path(args.profile_controller).resolve())

    data_dir = Path(tempfile.mkdtemp(prefix="vpnfleet-bench-"))
    state: dict = {}
    try:
        asyncio.run(amain(args, data_dir, state))
    except KeyboardInterrupt:
        log("interrupted")
        state["failed"] = True
    except Exception as exc:
        log(f"benchmark failed: {type(exc).__name__}: {exc}")
        state["failed"] = True
    finally:
        ctl = state.get("ctl")
        if ctl is not None:
            ctl.stop()
            if state.get("failed"):
                log("controller log tail:\n" + ctl.log_tail())
        if args.keep:
            log(f"kept {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    return 1 if state.get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
