#!/usr/bin/env python3
"""WireGuard benchmark: one interface with N peers, agent side (the real driver over wireguard-go) and
controller side (rendering the node's desired state). Needs root (network namespaces, TUN devices).

Agent side: the driver runs as its own process inside a fresh network namespace (tests/agent/netns.py's
AgentHarness: WireGuardComponent behind a StateApplier, as in the agent) with the wireguard-go backend.
Measured, as round trips from this process: applying N peers to a fresh interface; adding one peer to the
N-peer interface and removing it again, R times each (every time checking that the interface was changed in
place: same wireguard-go pid, same ifindex, the expected peers on the device); an unchanged re-apply (what
the round trip costs when the driver has nothing to do); the driver's traffic read (telemetry) of N idle
peers and of N peers that all moved bytes.

Controller side: a temporary SQLite database (the controller's migrations) with 1 node, 1 running
WireguardServer and N active WireguardClients (bulk insert); then wireguard_desired() + render_desired_state()
for that node, as the hub does before a push, and the size of the serialized DesiredState.

    .venv/bin/python bench/wireguard.py --peers 5000   # as root
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ipaddress
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psutil  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey  # noqa: E402
from cryptography.hazmat.primitives.serialization import (  # noqa: E402
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from google.protobuf.json_format import MessageToDict, ParseDict  # noqa: E402

from agent.wireguard import uapi  # noqa: E402
from agent.wireguard.model import key_to_hex  # noqa: E402
from protos import agent_pb2  # noqa: E402
from tests.agent.netns import AgentHarness, Lab, _report, missing_prerequisite  # noqa: E402

from figures import BenchAbort, log, mib, ms, pct  # noqa: E402 - bench/ is on sys.path when run as a script

IFACE_PREFIX = "wgb"  # + the lab's 6 hex characters: unique on the machine (the UAPI socket dir is shared)
LISTEN_PORT = 51820
#: the interface's own address; peer i gets the (i + 2)-th address of this network as a /32
SERVER_ADDRESS = "10.0.0.1/8"
NETWORK_BASE = int(ipaddress.IPv4Address("10.0.0.0"))
#: where the peers' endpoints point for the "all peers active" telemetry read (nothing listens there)
BLACKHOLE_ENDPOINT = "127.0.0.1:9"
CONTROLLER_RUNS = 7
UNCHANGED_ROUNDS = 10
IDLE_READS = 5




# -- test data ----------------------------------------------------------------------------------------------

def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def keypair() -> tuple[str, str]:
    key = X25519PrivateKey.generate()
    private = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return b64(private), b64(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def peer_address(i: int) -> str:
    return str(ipaddress.IPv4Address(NETWORK_BASE + i + 2))


class Peers:
    """N + extra peers: real X25519 public keys, a preshared key each, one /32 each (like the controller's)."""

    def __init__(self, count: int) -> None:
        self.private: list[str] = []
        self.public: list[str] = []
        self.psk: list[str] = []
        for _ in range(count):
            private, public = keypair()
            self.private.append(private)
            self.public.append(public)
            self.psk.append(b64(os.urandom(32)))

    def proto(self, i: int) -> agent_pb2.WireGuardPeer:
        return agent_pb2.WireGuardPeer(public_key=self.public[i], preshared_key=self.psk[i],
                                       allowed_ips=[f"{peer_address(i)}/32"], peer_id=str(i + 1))


# -- agent side ---------------------------------------------------------------------------------------------

class AgentBench:
    def __init__(self, lab: Lab, workdir: Path, n: int, rounds: int, deadline: float) -> None:
        self.lab = lab
        self.workdir = workdir
        self.n = n
        self.rounds = rounds
        self.deadline = deadline
        self.ns = ""
        self.name = ""
        self.harness: AgentHarness | None = None
        self.revision = 0
        self.server_private, _ = keypair()
        self.peers: Peers | None = None

    def remaining(self) -> float:
        return max(1.0, self.deadline - time.monotonic())

    def state_line(self, peers: list[agent_pb2.WireGuardPeer]) -> str:
        """The DesiredState (next revision) as the harness wants it, encoded before any timing starts."""
        self.revision += 1
        iface = agent_pb2.WireGuardInterface(name=self.name, private_key=self.server_private,
                                             listen_port=LISTEN_PORT, addresses=[SERVER_ADDRESS], nat=False)
        iface.peers.extend(peers)
        state = agent_pb2.DesiredState(revision=self.revision,
                                       wireguard=agent_pb2.WireGuardConfig(interfaces=[iface]))
        return base64.b64encode(state.SerializeToString()).decode()

    def apply(self, encoded: str) -> float:
        """One apply round trip; raises unless the wireguard component reports OK."""
        t0 = time.perf_counter()
        answer = self.harness.call("apply", timeout=self.remaining(), state=encoded)
        elapsed = time.perf_counter() - t0
        report = _report(answer["report"])
        if report is None:
            raise RuntimeError(f"revision {self.revision} was ignored by the driver")
        bad = [c for c in report.components if c.state != agent_pb2.ComponentStatus.OK]
        if bad or report.revision != self.revision:
            detail = "; ".join(f"{c.name}: {agent_pb2.ComponentStatus.State.Name(c.state)} {c.error}" for c in bad)
            raise RuntimeError(f"apply of revision {self.revision} failed: {detail or report}")
        return elapsed

    def identity(self) -> tuple[int, int]:
        """(wireguard-go pid from the driver's records, ifindex of the interface in the namespace)."""
        rec = self.harness.records().get(self.name)
        if rec is None or rec.get("backend") != "userspace" or not rec.get("pid"):
            raise RuntimeError(f"{self.name}: not a wireguard-go interface in the driver's records: {rec}")
        links = self.lab.ip_json(self.ns, "link", "show", "dev", self.name)
        return int(rec["pid"]), int(links[0]["ifindex"])

    def same_interface(self, before: tuple[int, int], what: str) -> None:
        now = self.identity()
        if now != before:
            raise RuntimeError(f"{what} recreated the interface: wireguard-go pid, ifindex {now} instead of {before}")

    def check_device(self, expected: set[str], what: str) -> None:
        device = uapi.get(self.name)
        if set(device.peers) != expected:
            missing, extra = len(expected - set(device.peers)), len(set(device.peers) - expected)
            raise RuntimeError(f"after {what}: device has {len(device.peers)} peers "
                               f"({missing} missing, {extra} unexpected)")

    def run(self) -> dict:
        n, rounds = self.n, self.rounds
        out: dict = {}
        log(f"generating {n + rounds} peer keys")
        peers = self.peers = Peers(n + rounds)
        base = [peers.proto(i) for i in range(n)]
        base_keys = set(peers.public[:n])

        self.ns = self.lab.netns("srv")
        self.name = self.lab.iface_name(IFACE_PREFIX)
        self.harness = AgentHarness(self.lab, self.ns, self.workdir / "state",
                                    env={"VPNFLEET_WIREGUARD_BACKEND": "userspace", "PYTHONUNBUFFERED": "1"})

        # 1. N peers onto a fresh interface (creates the wireguard-go process and the link).
        log(f"applying {n} peers to a fresh interface {self.name} in {self.ns}")
        out["create"] = self.apply(self.state_line(base))
        self.check_device(base_keys, "the first apply")
        pid, ifindex = self.identity()
        out["pid"], out["ifindex"] = pid, ifindex
        out["wg_rss_after_create"] = psutil.Process(pid).memory_info().rss
        out["driver_rss_after_create"] = psutil.Process(self.harness.proc.pid).memory_info().rss

        # Baseline: the same config at a new revision; the StateApplier sees an unchanged part and skips the
        # driver, so this is the round trip itself (JSON-lines IPC, decoding, hashing, the state file).
        line = self.state_line(base)
        unchanged = []
        for _ in range(UNCHANGED_ROUNDS):
            unchanged.append(self.apply(line))
            line = self.state_line(base)
        self.revision -= 1  # the last line was never sent
        out["unchanged"] = unchanged

        # 2. Add one peer / remove it again, R times; the interface must never be recreated.
        log(f"{rounds} rounds of add one peer / remove it")
        adds, removes = [], []
        for r in range(rounds):
            extra = n + r
            add_line = self.state_line(base + [peers.proto(extra)])
            adds.append(self.apply(add_line))
            self.same_interface((pid, ifindex), f"round {r + 1}: adding a peer")
            self.check_device(base_keys | {peers.public[extra]}, f"adding peer {extra + 1}")
            removes.append(self.apply(self.state_line(base)))
            self.same_interface((pid, ifindex), f"round {r + 1}: removing a peer")
            self.check_device(base_keys, f"removing peer {extra + 1}")
            if (r + 1) % max(1, rounds // 5) == 0:
                log(f"  round {r + 1}/{rounds}: add {ms(adds[-1])}, remove {ms(removes[-1])}")
        out["adds"], out["removes"] = adds, removes
        out["verified_applies"] = 2 * rounds

        # 3. Telemetry: the driver's traffic read (UAPI get of every peer, deltas against the baselines).
        reads, entries = [], []
        for _ in range(IDLE_READS):
            t0 = time.perf_counter()
            got = self.harness.traffic()
            reads.append(time.perf_counter() - t0)
            entries.append(len(got))
        out["idle_reads"], out["idle_entries"] = reads, max(entries)
        out["wg_rss_idle"] = psutil.Process(pid).memory_info().rss
        out["driver_rss_idle"] = psutil.Process(self.harness.proc.pid).memory_info().rss
        out.update(self.active_read(peers))
        out["wg_rss"] = psutil.Process(pid).memory_info().rss
        out["driver_rss"] = psutil.Process(self.harness.proc.pid).memory_info().rss
        self.same_interface((pid, ifindex), "the telemetry reads")
        return out

    def active_read(self, peers: Peers) -> dict:
        """Make every peer's tx counter move (an endpoint nobody answers, one packet to each peer's address:
        wireguard-go sends a 148-byte handshake initiation), then time one traffic read with N entries."""
        n = self.n
        body = "".join(f"public_key={key_to_hex(peers.public[i])}\nendpoint={BLACKHOLE_ENDPOINT}\n"
                       for i in range(n))
        answer = uapi.request(uapi.socket_path(self.name), f"set=1\n{body}\n")
        if "errno=0" not in answer:
            raise RuntimeError(f"setting the peers' endpoints failed: {answer.strip()[-80:]}")
        targets = self.workdir / "targets.txt"
        # wireguard-go computes each initiation in its TUN reader before taking the next packet, and the TUN
        # queue (500 packets) drops the overflow: send in small paced bursts, then again to the peers missed.
        sender = ("import socket, sys, time\n"
                  "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                  "for n, a in enumerate(open(sys.argv[1]).read().split()):\n"
                  "    try:\n"
                  "        s.sendto(b'x', (a, 9))\n"
                  "    except OSError:\n"
                  "        pass\n"
                  "    if n % 50 == 49:\n"
                  "        time.sleep(0.01)\n")
        todo = list(range(n))
        started = time.monotonic()
        for _attempt in range(5):
            targets.write_text("\n".join(peer_address(i) for i in todo))
            self.lab.exec(self.ns, [sys.executable, "-c", sender, str(targets)], timeout=60)
            wait_until = time.monotonic() + 1.0
            while True:
                device = uapi.get(self.name)
                todo = [i for i in todo if device.peers[peers.public[i]].tx_bytes == 0]
                if not todo or time.monotonic() > wait_until:
                    break
                time.sleep(0.1)
            if not todo:
                break
        moved = n - len(todo)
        # Retransmitted initiations start 5 s after the first ones; the read below normally comes before.
        after = time.monotonic() - started
        t0 = time.perf_counter()
        got = self.harness.traffic()
        elapsed = time.perf_counter() - t0
        # What the test harness adds on top of the driver (MessageToDict + JSON on both ends), measured here.
        protos = [ParseDict(e, agent_pb2.PeerTraffic()) for e in got]
        t1 = time.perf_counter()
        json.loads(json.dumps({"peers": [MessageToDict(p, preserving_proto_field_name=True) for p in protos]}))
        overhead = time.perf_counter() - t1
        return {"active_read": elapsed, "active_entries": len(got), "active_moved": moved,
                "active_overhead": overhead, "active_after": after}


def wireguard_go_version() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(["wireguard-go", "--version"], capture_output=True, text=True, timeout=5)
        words = (done.stdout or done.stderr).split()
        for w in words:
            if w.startswith("v") and any(ch.isdigit() for ch in w):
                return w
    return "?"


# -- controller side ----------------------------------------------------------------------------------------

async def controller_bench(db_path: Path, n: int, peers: Peers, runs: int) -> dict:
    from sqlalchemy import insert, select

    from controller.db import make_engine, make_sessionmaker, prepare_database
    from controller.models import Node, WireguardClient, WireguardServer
    from controller.services.desired_state import effective_agent_settings, render_desired_state, wireguard_desired

    out: dict = {}
    engine = make_engine(f"sqlite+aiosqlite:///{db_path}")
    try:
        await prepare_database(engine)
        sessions = make_sessionmaker(engine)
        t0 = time.perf_counter()
        server_private, server_public = keypair()
        async with sessions() as s:
            node = Node(name="bench-wg", region="local", region_name="Local", provider="bench",
                        instance_id="bench-wg", status="running")
            s.add(node)
            await s.flush()
            server = WireguardServer(node_uuid=node.uuid, name="bench", interface="wg0", listen_port=LISTEN_PORT,
                                     ipv4_address=SERVER_ADDRESS, private_key=server_private,
                                     public_key=server_public, status="running", nat=True)
            s.add(server)
            await s.flush()
            await s.execute(insert(WireguardClient), [
                {"server_id": server.id, "name": f"client-{i + 1}", "ipv4_address": f"{peer_address(i)}/32",
                 "public_key": peers.public[i], "private_key": peers.private[i], "preshared_key": peers.psk[i],
                 "allowed_ips": ["0.0.0.0/0"], "status": "active"}
                for i in range(n)])
            await s.commit()
            node_uuid = node.uuid
        out["seed"] = time.perf_counter() - t0

        defaults = {"metrics_interval_seconds": 10, "log_level": "info"}
        query, render, serialize, total = [], [], [], []
        size = peers_rendered = 0
        for _ in range(runs):
            async with sessions() as s:  # a fresh session each time, as the hub opens one per push
                t0 = time.perf_counter()
                row = (await s.scalars(select(Node).where(Node.uuid.in_([node_uuid])))).one()
                wireguard = await wireguard_desired(s, [node_uuid])
                t1 = time.perf_counter()
                settings = effective_agent_settings(defaults, {}, row.agent_settings or {})
                state = render_desired_state(row, settings, wireguard.get(node_uuid))
                t2 = time.perf_counter()
                data = state.SerializeToString()
                t3 = time.perf_counter()
            query.append(t1 - t0)
            render.append(t2 - t1)
            serialize.append(t3 - t2)
            total.append(t3 - t0)
            size = len(data)
            peers_rendered = sum(len(i.peers) for i in state.wireguard.interfaces)
        if peers_rendered != n:
            raise RuntimeError(f"the rendered desired state has {peers_rendered} peers, expected {n}")
        out.update(query=query, render=render, serialize=serialize, total=total, size=size)
        return out
    finally:
        await engine.dispose()


# -- main ---------------------------------------------------------------------------------------------------

def report(args: argparse.Namespace, a: dict, c: dict, version: str) -> str:
    n, r = args.peers, args.rounds
    adds, removes = a["adds"], a["removes"]
    idle = a["idle_reads"]
    lines = [
        "",
        "=" * 100,
        f"wireguard: {n} peers on one interface, wireguard-go {version}, driver in its own process in a netns "
        f"(times are round trips to it)",
        f"apply {n} peers to a fresh interface: {ms(a['create'])}",
        f"unchanged re-apply (round-trip baseline, driver skipped): p50 {ms(statistics.median(a['unchanged']))}",
        f"add 1 peer ({n} -> {n + 1}, {r} rounds):    p50 {ms(pct(adds, 50))}  p99 {ms(pct(adds, 99))}  "
        f"max {ms(max(adds))}",
        f"remove 1 peer ({n + 1} -> {n}, {r} rounds): p50 {ms(pct(removes, 50))}  p99 {ms(pct(removes, 99))}  "
        f"max {ms(max(removes))}",
        f"interface never recreated: wireguard-go pid {a['pid']} and ifindex {a['ifindex']} unchanged and the "
        f"device's peers as expected after each of {a['verified_applies']} applies",
        f"telemetry read, {n} idle peers: p50 {ms(statistics.median(idle))} (max {ms(max(idle))}, "
        f"{a['idle_entries']} entries)",
        f"telemetry read, {a['active_moved']} of {n} peers with new counters: {ms(a['active_read'])} "
        f"({a['active_entries']} entries, of which ~{ms(a['active_overhead'])} harness JSON; "
        f"{a['active_after']:.1f} s after the first initiations)",
        f"RSS after create / after the rounds / after the active read: wireguard-go "
        f"{mib(a['wg_rss_after_create']):.0f} / {mib(a['wg_rss_idle']):.0f} / {mib(a['wg_rss']):.0f} MiB, "
        f"driver process {mib(a['driver_rss_after_create']):.0f} / {mib(a['driver_rss_idle']):.0f} / "
        f"{mib(a['driver_rss']):.0f} MiB",
        f"controller: 1 node + 1 server + {n} clients inserted in {ms(c['seed'])}; desired state of the node "
        f"(p50 of {len(c['total'])}):",
        f"  query (node + wireguard_desired) {ms(pct(c['query'], 50))} + render_desired_state "
        f"{ms(pct(c['render'], 50))} + serialize {ms(pct(c['serialize'], 50))} = {ms(pct(c['total'], 50))} "
        f"(max {ms(max(c['total']))}); DesiredState {c['size']:,} bytes ({c['size'] / n:.0f} per peer)",
        "=" * 100,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peers", type=int, default=5000, help="peers on the interface (default 5000)")
    p.add_argument("--rounds", type=int, default=50, help="add-one/remove-one rounds (default 50)")
    p.add_argument("--timeout", type=float, default=600.0, help="overall limit, seconds (default 600)")
    p.add_argument("--keep", action="store_true", help="keep the temporary dir (harness log, driver state, DB)")
    args = p.parse_args(argv)
    if args.peers < 1 or args.rounds < 1:
        p.error("--peers and --rounds must be at least 1")
    if os.geteuid() != 0:
        print("bench/wireguard.py must run as root (network namespaces, TUN devices, wireguard-go)",
              file=sys.stderr)
        return 2
    why = missing_prerequisite()
    if why:
        print(f"bench/wireguard.py cannot run here: {why}", file=sys.stderr)
        return 2

    def abort(signum, _frame):
        raise BenchAbort("timeout" if signum == signal.SIGALRM else signal.Signals(signum).name)

    signal.signal(signal.SIGALRM, abort)
    signal.signal(signal.SIGTERM, abort)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    signal.alarm(max(1, math.ceil(args.timeout)))
    deadline = time.monotonic() + args.timeout

    workdir = Path(tempfile.mkdtemp(prefix="vpnfleet-wgbench-"))
    lab = Lab(workdir)
    bench = AgentBench(lab, workdir, args.peers, args.rounds, deadline)
    failed = True
    try:
        version = wireguard_go_version()
        agent_figures = bench.run()
        log("agent side done; stopping the driver and removing the namespace")
        bench.harness.stop()
        lab.cleanup()
        log(f"controller side: SQLite with {args.peers} clients")
        controller_figures = asyncio.run(
            controller_bench(workdir / "vpnfleet.db", args.peers, bench.peers, CONTROLLER_RUNS))
        signal.alarm(0)
        print(report(args, agent_figures, controller_figures, version), flush=True)
        failed = False
    except BenchAbort as exc:
        if str(exc) == "timeout":
            log(f"benchmark did not finish within {args.timeout:.0f} s")
        else:
            log(f"stopped by {exc}")
    except KeyboardInterrupt:
        log("interrupted")
    except Exception as exc:
        log(f"benchmark failed: {type(exc).__name__}: {exc}")
        harness_log = workdir / "state-harness.log"
        with contextlib.suppress(OSError):
            tail = harness_log.read_text(errors="replace").splitlines()[-15:]
            if tail:
                log("driver harness log tail:\n" + "\n".join(tail))
    finally:
        signal.alarm(0)
        # Cleanup must not be cut short by a second Ctrl-C or a late signal.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with contextlib.suppress(Exception):
            if bench.harness is not None and bench.harness.proc.poll() is None:
                bench.harness.stop()
        lab.cleanup()
        leftovers = [ns for ns in lab.namespaces
                     if subprocess.run(["ip", "netns", "pids", ns], capture_output=True).returncode == 0]
        if leftovers:
            log(f"could not remove namespaces: {', '.join(leftovers)}")
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
