#!/usr/bin/env python3
"""What the egress policy costs: download throughput through V2Ray with and without it, in the same run.

Three network namespaces (root only): a node running two real V2Ray servers rendered by the agent
(agent.v2ray.config.render) for the same VMess user, one with the egress policy as every node runs it and
one with its routing cut down to the API rule (what nodes ran before the policy); a subscriber namespace with
one real V2Ray client per server; and an "internet" host at 203.0.113.10 serving /bytes/N. Each round
downloads SIZE bytes through each server in turn (alternating which goes first); the report gives each
side's MB/s (median and min over the rounds) and their ratio. Also: the controller's cost of rendering
per-node ids (controller.credentials) for N subscribers on one node.

    .venv/bin/python bench/egress.py --size-mb 100 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from agent.egress import EgressSpec  # noqa: E402
from agent.v2ray import config as v2config  # noqa: E402
from agent.v2ray.spec import Inbound, V2RaySpec  # noqa: E402
from bench.figures import log  # noqa: E402
from controller import credentials  # noqa: E402
from tests.agent.netns import Lab, missing_prerequisite, wait_for  # noqa: E402
from tests.v2ray_lab import client_config  # noqa: E402

INTERNET = "203.0.113.10"
USER = str(uuid.uuid4())


def server_config(workdir: Path, port: int, api_port: int, policy: bool) -> Path:
    spec = V2RaySpec(inbounds=(Inbound("vmess", "vmess", port, "0.0.0.0"),), users={"bench": USER},
                     log_level="warning", egress=EgressSpec())
    config = v2config.render(spec, api_port, "", str(workdir / f"error-{port}.log"), ["198.51.100.1/32"])
    if not policy:  # before the policy: the API's own rule and nothing else
        config["routing"] = {"rules": config["routing"]["rules"][:1]}
        config["outbounds"] = config["outbounds"][:1]
    path = workdir / f"server-{port}.json"
    path.write_bytes(v2config.dumps(config))
    return path


def download(lab: Lab, ns: str, socks_port: int, size: int) -> float:
    """Seconds for one download of size bytes through the SOCKS port (curl: the client side stays cheap)."""
    started = time.monotonic()
    done = lab.exec(ns, ["curl", "-sS", "-o", "/dev/null", "--socks5-hostname", f"127.0.0.1:{socks_port}",
                         f"http://{INTERNET}:8080/bytes/{size}", "-w", "%{size_download}"], timeout=600)
    seconds = time.monotonic() - started
    if int(done.stdout.strip() or 0) != size:
        raise RuntimeError(f"downloaded {done.stdout!r} bytes instead of {size}")
    return seconds


def render_cost(subscribers: int) -> float:
    """Seconds to derive every subscriber's id on one node (what a push pays per node)."""
    secrets_ = [credentials.new_secret() for _ in range(subscribers)]
    node = str(uuid.uuid4())
    started = time.perf_counter()
    for secret in secrets_:
        credentials.node_credential(secret, node)
    return time.perf_counter() - started


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mb", type=int, default=100)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--subscribers", type=int, default=10_000)
    args = p.parse_args()
    reason = missing_prerequisite()
    if reason:
        print(f"bench/egress.py: {reason}", file=sys.stderr)
        return 2
    size = args.size_mb * 1_000_000
    workdir = Path(tempfile.mkdtemp(prefix="bench-egress-"))
    lab = Lab(workdir)
    try:
        node, sub, inet = lab.netns("node"), lab.netns("sub"), lab.netns("inet")
        lab.veth(sub, "vs-s", "198.51.100.2/24", node, "vs-n", "198.51.100.1/24")
        lab.veth(node, "vi-n", "203.0.113.1/24", inet, "vi-i", f"{INTERNET}/24")
        lab.spawn(inet, [sys.executable, "-m", "tests.v2ray_lab", "serve", INTERNET, "8080"],
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        socks = {}
        for policy, port in ((True, 20001), (False, 20002)):
            lab.spawn(node, ["v2ray", "-config", str(server_config(workdir, port, port + 100, policy))],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            client = workdir / f"client-{port}.json"
            client.write_text(json.dumps(client_config("vmess", "198.51.100.1", port, USER, port + 1000)))
            lab.spawn(sub, ["v2ray", "-config", str(client)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            socks[policy] = port + 1000
        wait_for(lambda: all(lab.exec(sub, ["curl", "-s", "-o", "/dev/null", "--socks5-hostname", f"127.0.0.1:{s}",
                                            f"http://{INTERNET}:8080/bytes/1"], check=False).returncode == 0
                             for s in socks.values()), 20, "both tunnels carry traffic")
        seconds: dict[bool, list[float]] = {True: [], False: []}
        for i in range(args.rounds):
            for policy in ((True, False) if i % 2 == 0 else (False, True)):
                seconds[policy].append(download(lab, sub, socks[policy], size))
            log(f"round {i + 1}: policy {seconds[True][-1]:.2f} s, none {seconds[False][-1]:.2f} s")
        rate = {k: [size / 1e6 / s for s in v] for k, v in seconds.items()}
        with_, without = statistics.median(rate[True]), statistics.median(rate[False])
        print(f"download of {args.size_mb} MB through VMess, {args.rounds} rounds each, same run:")
        print(f"  with the egress policy    median {with_:.0f} MB/s (min {min(rate[True]):.0f})")
        print(f"  without (API rule only)   median {without:.0f} MB/s (min {min(rate[False]):.0f})")
        print(f"  ratio with/without        {with_ / without:.3f}")
        cost = render_cost(args.subscribers)
        print(f"per-node ids: {args.subscribers} subscribers on one node derived in {cost * 1000:.0f} ms "
              f"({cost / args.subscribers * 1e6:.1f} us each)")
    finally:
        lab.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
