#!/usr/bin/env python3
"""V2Ray driver benchmark: one node with N users (default 10,000) on a VMess and a VLESS inbound, per core.

The agent's V2RayComponent runs in this process (as in the agent: apply() on the event loop, the core as its
own process in its own session) against the real `v2ray` (`--core v2ray`, VLESS over WebSocket + TLS) or
`xray` (`--core xray`, VLESS REALITY Vision with a local TLS 1.3 target), on random loopback ports. Measured:

  - first apply: N users onto a node without V2Ray (render, `v2ray -test`, start, wait until it serves);
  - unchanged re-apply: the driver's cost when nothing changed;
  - hot add of one user (N -> N+1) and removal of it (N+1 -> N), R rounds each, through V2Ray's
    HandlerService; after every change (outside the timer) a real VLESS client proves the user works or is
    refused, and V2Ray's pid must be unchanged: V2Ray starts must stay at 1;
  - drift repair: one reconcile() pass (an AddUser per user and inbound, "already exists" for all);
  - telemetry: one take_traffic() with N users, and the usage lag: from the end of a 1 MB download through a
    client until take_traffic() (polled every 20 ms) reports it;
  - RSS of V2Ray and of this process.

    .venv/bin/python bench/v2ray.py --users 10000 --rounds 50 [--core xray]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from agent.drivers.v2ray import V2RayComponent  # noqa: E402
from agent.v2ray import process  # noqa: E402
from bench.figures import BenchAbort, log, mib, ms, pct  # noqa: E402
from protos import agent_pb2  # noqa: E402
from tests.world import World, enter_for_benchmark  # noqa: E402
from tests.v2ray_lab import (ClientTransport, TlsTarget, V2RayClient, can_fetch, core_binary, fetch,  # noqa: E402
                             free_port, reality_keys, shared_certificate)

MB = 1_000_000
UNCHANGED_ROUNDS = 10
LAG_ROUNDS = 5
POLL_SECONDS = 0.02




class Users:
    """email -> uuid for N base users plus one extra per round (like the controller's subscriber ids)."""

    def __init__(self, count: int) -> None:
        self.emails = [f"sub-{i:06d}" for i in range(count)]
        self.uuids = {email: str(uuid.uuid4()) for email in self.emails}

    def proto(self, emails: list[str]) -> list[agent_pb2.V2RayUser]:
        return [agent_pb2.V2RayUser(email=e, uuid=self.uuids[e]) for e in emails]


SHORT_ID = "0123456789abcdef"
WS_PATH = "/bench"


class Bench:
    """The core's VMess inbound and a VLESS inbound with the core's secure profile: REALITY Vision on Xray (its
    target a local TLS 1.3 server), WebSocket over TLS on V2Ray (VLESS is never served in clear)."""

    def __init__(self, workdir: Path, n: int, rounds: int, core: str) -> None:
        self.n, self.rounds, self.core = n, rounds, core
        self.component = V2RayComponent(workdir / "state", reconcile_seconds=10 ** 9)
        self.vmess_port, self.vless_port = free_port(), free_port()
        self.users = Users(n + rounds)
        self.base = self.users.emails[:n]
        self.certificate = shared_certificate()
        self.target = TlsTarget(self.certificate)
        self.private_key, self.public_key = reality_keys()

    def vless_inbound(self) -> agent_pb2.V2RayInbound:
        name = self.certificate.server_name
        if self.core == "xray":
            return agent_pb2.V2RayInbound(
                tag="vless", protocol="vless", port=self.vless_port, listen="127.0.0.1", profile="vless-reality-vision",
                reality=agent_pb2.RealitySettings(private_key=self.private_key, short_ids=[SHORT_ID],
                                                  dest=self.target.dest, server_names=[name]))
        return agent_pb2.V2RayInbound(
            tag="vless", protocol="vless", port=self.vless_port, listen="127.0.0.1", profile="vless-ws-tls",
            tls=agent_pb2.TlsSettings(certificate_file=self.certificate.certificate_file,
                                      key_file=self.certificate.key_file, server_name=name), ws_path=WS_PATH)

    def transport(self) -> ClientTransport:
        name = self.certificate.server_name
        if self.core == "xray":
            return ClientTransport(profile="vless-reality-vision", server_name=name, public_key=self.public_key,
                                   short_id=SHORT_ID)
        return ClientTransport(profile="vless-ws-tls", server_name=name, ws_path=WS_PATH)

    def part(self, emails: list[str]) -> agent_pb2.V2RayConfig:
        inbounds = [
            agent_pb2.V2RayInbound(tag="vmess", protocol="vmess", port=self.vmess_port, listen="127.0.0.1"),
            self.vless_inbound(),
        ]
        return agent_pb2.V2RayConfig(core=self.core, inbounds=inbounds, users=self.users.proto(emails))

    async def timed_apply(self, part: agent_pb2.V2RayConfig) -> float:
        t0 = time.perf_counter()
        await self.component.apply(part)
        return time.perf_counter() - t0

    async def check(self, email: str, expect: bool, url: str) -> None:
        """A real VLESS client with this user's uuid works (or is refused, quickly: VLESS answers empty)."""
        with V2RayClient("vless", "127.0.0.1", self.vless_port, self.users.uuids[email], transport=self.transport(),
                         core=self.core) as client:
            ok = await asyncio.to_thread(can_fetch, client.socks_port, url, 3.0)
        if ok != expect:
            raise RuntimeError(f"user {email} {'does not work' if expect else 'still works'} after the change")

    def same_v2ray(self, pid: int, what: str) -> None:
        if self.component.pid != pid or self.component.starts != 1:
            raise RuntimeError(f"{what}: V2Ray pid {self.component.pid} (was {pid}), {self.component.starts} starts")

    async def run(self, web: World) -> dict:
        out: dict = {}
        c = self.component
        part = self.part(self.base)  # built before the timer, as the agent gets it decoded
        self.target.__enter__()
        log(f"first apply: {self.n} users on a VMess and a VLESS inbound ({self.core})")
        out["first"] = await self.timed_apply(part)
        pid = c.pid
        self.same_v2ray(pid, "first apply")
        await self.check(self.base[0], True, web.url(1000))
        out["pid"], out["v2ray_rss_first"] = pid, psutil.Process(pid).memory_info().rss
        out["config_bytes"] = c.config_path.stat().st_size

        out["unchanged"] = [await self.timed_apply(self.part(self.base)) for _ in range(UNCHANGED_ROUNDS)]

        log(f"{self.rounds} rounds of add one user / remove it")
        adds, removes = [], []
        for r in range(self.rounds):
            extra = self.users.emails[self.n + r]
            added, back = self.part(self.base + [extra]), self.part(self.base)
            adds.append(await self.timed_apply(added))
            self.same_v2ray(pid, f"round {r + 1}: add")
            await self.check(extra, True, web.url(1000))
            removes.append(await self.timed_apply(back))
            self.same_v2ray(pid, f"round {r + 1}: remove")
            await self.check(extra, False, web.url(1000))
            if (r + 1) % max(1, self.rounds // 5) == 0:
                log(f"  round {r + 1}/{self.rounds}: add {ms(adds[-1])}, remove {ms(removes[-1])}")
        out["adds"], out["removes"] = adds, removes

        log("drift repair pass")
        t0 = time.perf_counter()
        out["repaired"] = await c.reconcile()
        out["reconcile"] = time.perf_counter() - t0

        log("telemetry: take_traffic and usage lag")
        await c.take_traffic(1)  # start from zero
        c.spooled(1)
        t0 = time.perf_counter()
        await c.take_traffic(2)
        out["take_idle"] = time.perf_counter() - t0
        c.spooled(2)
        lags, counted, seq = [], [], 3
        email = self.base[-1]
        with V2RayClient("vmess", "127.0.0.1", self.vmess_port, self.users.uuids[email]) as client:
            for _ in range(LAG_ROUNDS):
                body = await asyncio.to_thread(fetch, client.socks_port, web.url(MB), 10.0)
                if len(body) != MB:
                    raise RuntimeError(f"downloaded {len(body)} bytes instead of {MB}")
                done = time.perf_counter()
                got = 0
                while got < MB:
                    if time.perf_counter() - done > 10:
                        raise RuntimeError(f"take_traffic reported {got} of {MB} bytes after 10 s")
                    got += sum(e.downlink_bytes for e in await c.take_traffic(seq) if e.email == email)
                    c.spooled(seq)
                    seq += 1
                    if got < MB:
                        await asyncio.sleep(POLL_SECONDS)
                lags.append(time.perf_counter() - done)
                counted.append(got)
        out["lags"], out["counted"] = lags, counted
        self.same_v2ray(pid, "the end")
        out["starts"] = c.starts
        out["v2ray_rss"] = psutil.Process(pid).memory_info().rss
        out["bench_rss"] = psutil.Process().memory_info().rss
        return out


def version(core: str) -> str:
    with contextlib.suppress(Exception):
        import subprocess

        argv = [core_binary(core), "version" if core == "xray" else "-version"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=5)
        return done.stdout.split("\n", 1)[0].split(" (", 1)[0]
    return f"{core} ?"


def report(args: argparse.Namespace, f: dict, v2ray_version: str) -> str:
    n, adds, removes = args.users, f["adds"], f["removes"]
    lines = [
        "=" * 100,
        f"{args.core}: {n} users on a VMess and a VLESS inbound ({'REALITY Vision' if args.core == 'xray' else 'ws+tls'}),"
        f" {v2ray_version}, driver in this process",
        f"first apply ({n} users: render, config test, start, serving): {ms(f['first'])}; "
        f"config.json {f['config_bytes'] / 1e6:.1f} MB",
        f"unchanged re-apply: p50 {ms(pct(f['unchanged'], 50))}",
        f"hot add 1 user ({n} -> {n + 1}, {len(adds)} rounds):    "
        f"p50 {ms(pct(adds, 50))}  p99 {ms(pct(adds, 99))}  max {ms(max(adds))}",
        f"remove 1 user ({n + 1} -> {n}, {len(removes)} rounds): "
        f"p50 {ms(pct(removes, 50))}  p99 {ms(pct(removes, 99))}  max {ms(max(removes))}",
        f"V2Ray starts: {f['starts']} (pid {f['pid']} throughout; each change checked with a real VLESS client)",
        f"drift repair pass ({2 * n} AddUser calls, {f['repaired']} repaired): {ms(f['reconcile'])}",
        f"take_traffic with {n} users (idle): {ms(f['take_idle'])}",
        f"usage lag (end of a 1 MB download -> reported by take_traffic, {len(f['lags'])} downloads): "
        f"p50 {ms(pct(f['lags'], 50))}  max {ms(max(f['lags']))}; counted {min(f['counted']):,}.."
        f"{max(f['counted']):,} bytes per MB",
        f"RSS: V2Ray {mib(f['v2ray_rss_first']):.0f} MiB after the first apply, {mib(f['v2ray_rss']):.0f} MiB "
        f"at the end; bench process (driver) {mib(f['bench_rss']):.0f} MiB",
        "=" * 100,
    ]
    return "\n".join(lines)


async def amain(args: argparse.Namespace, workdir: Path, web: World) -> dict:
    bench = Bench(workdir, args.users, args.rounds, args.core)
    try:
        return await bench.run(web)
    finally:
        await bench.component.close()
        await bench.component.apply(None)
        bench.target.__exit__()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=10_000, help="users on the node (default 10000)")
    p.add_argument("--rounds", type=int, default=50, help="add-one/remove-one rounds (default 50)")
    p.add_argument("--timeout", type=float, default=600.0, help="overall limit, seconds (default 600)")
    p.add_argument("--keep", action="store_true", help="keep the temporary dir (driver state, V2Ray logs)")
    p.add_argument("--core", choices=("v2ray", "xray"), default="v2ray",
                   help="the proxy core (default v2ray): VLESS over ws+tls on v2ray, REALITY Vision on xray")
    args = p.parse_args(argv)
    web = enter_for_benchmark()  # the internet host; first: every process started later inherits its network
    if args.users < 1 or args.rounds < 1:
        p.error("--users and --rounds must be at least 1")
    if shutil.which(core_binary(args.core)) is None:
        print(f"bench/v2ray.py needs the {args.core} binary (v2ray: Debian package; xray: `make xray`; or "
              f"$VPNFLEET_{args.core.upper()})", file=sys.stderr)
        return 2

    def abort(signum, _frame):
        raise BenchAbort("timeout" if signum == signal.SIGALRM else signal.Signals(signum).name)

    # The driver's events (and V2Ray's own warnings) go to the logger: label them as such on stderr.
    logging.basicConfig(level=logging.WARNING, format="[%(asctime)s] %(name)s: %(message)s", datefmt="%H:%M:%S")
    signal.signal(signal.SIGALRM, abort)
    signal.signal(signal.SIGTERM, abort)
    signal.alarm(max(1, int(args.timeout)))
    workdir = Path(tempfile.mkdtemp(prefix="vpnfleet-v2bench-"))
    workdir.chmod(0o701)  # V2Ray's unprivileged user passes through it (agent/dataplane_user.py)
    failed = True
    try:
        figures = asyncio.run(amain(args, workdir, web))
        signal.alarm(0)
        print(report(args, figures, version(args.core)), flush=True)
        failed = False
    except BenchAbort as exc:
        log(f"benchmark did not finish within {args.timeout:.0f} s" if str(exc) == "timeout" else f"stopped by {exc}")
    except KeyboardInterrupt:
        log("interrupted")
    except Exception as exc:
        log(f"benchmark failed: {type(exc).__name__}: {exc}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        # Whatever happened: no V2Ray of this run may survive it.
        for pid, ticks in process.stray_processes(str(workdir / "state" / "v2ray" / "config.json")):
            process.terminate(pid, ticks)
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
