#!/usr/bin/env python3
"""Throughput per transport and per subscriber app, in one run (root: it runs in a test network of its own).

One node: the agent's V2RayComponent driving real Xray with the four profiles the controller serves (vmess,
vless-reality-vision, vmess-ws-tls, vless-ws-tls; REALITY's target a local TLS 1.3 server, ws-tls a
self-signed certificate). Each subscriber app reads what the controller would serve for these endpoints
(controller.share_links: sing-box JSON, mihomo YAML, the links for Xray and V2Ray clients), changed only where
a test must: a free local port, the server selected, and the self-signed certificate trusted. Each (transport,
app) pair downloads SIZE MB from the internet host of tests/world.py through the app's local SOCKS port
(curl), ROUNDS times; the report gives the median MB/s per pair, all measured in the same run.

    .venv/bin/python bench/transports.py --size-mb 100 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.world import enter_for_benchmark  # noqa: E402  (first: processes inherit its network)

from agent.drivers.v2ray import V2RayComponent  # noqa: E402
from bench.figures import log  # noqa: E402
from controller.share_links import Endpoint, render_clash, render_sing_box  # noqa: E402
from protos import agent_pb2  # noqa: E402
from tests.client_apps import MihomoClient, SingBoxClient, mihomo_binary, sing_box_binary  # noqa: E402
from tests.v2ray_lab import (ClientTransport, TlsTarget, V2RayClient, free_port, reality_keys,  # noqa: E402
                             shared_certificate, xray_binary)

USER = str(uuid.uuid4())
SHORT_ID = "0123456789abcdef"
WS_PATH = "/bench-ws"
PROFILES = ("vmess", "vless-reality-vision", "vmess-ws-tls", "vless-ws-tls")


def protocol_of(profile: str) -> str:
    return "vless" if profile.startswith("vless") else "vmess"


class Node:
    def __init__(self, workdir: Path) -> None:
        self.certificate = shared_certificate()
        self.target = TlsTarget(self.certificate)
        self.private_key, self.public_key = reality_keys()
        self.ports = {profile: free_port() for profile in PROFILES}
        self.component = V2RayComponent(workdir / "state", reconcile_seconds=10 ** 9)

    def part(self) -> agent_pb2.V2RayConfig:
        name = self.certificate.server_name
        inbounds = []
        for profile, port in self.ports.items():
            inbound = agent_pb2.V2RayInbound(tag=profile, protocol=protocol_of(profile), port=port,
                                             listen="127.0.0.1", profile=profile)
            if profile == "vless-reality-vision":
                inbound.reality.CopyFrom(agent_pb2.RealitySettings(
                    private_key=self.private_key, short_ids=[SHORT_ID], dest=self.target.dest, server_names=[name]))
            elif profile.endswith("-ws-tls"):
                inbound.tls.CopyFrom(agent_pb2.TlsSettings(certificate_file=self.certificate.certificate_file,
                                                           key_file=self.certificate.key_file, server_name=name))
                inbound.ws_path = WS_PATH
            inbounds.append(inbound)
        return agent_pb2.V2RayConfig(core="xray", inbounds=inbounds,
                                     users=[agent_pb2.V2RayUser(email="bench", uuid=USER)])

    def endpoint(self, profile: str) -> Endpoint:
        sni = self.certificate.server_name if profile != "vmess" else ""
        return Endpoint(profile, "127.0.0.1", self.ports[profile], protocol_of(profile),
                        profile="" if profile == "vmess" else profile, sni=sni,
                        public_key=self.public_key if profile == "vless-reality-vision" else "",
                        short_id=SHORT_ID if profile == "vless-reality-vision" else "",
                        ws_path=WS_PATH if profile.endswith("-ws-tls") else "")

    def transport(self, profile: str) -> ClientTransport:
        name = self.certificate.server_name
        if profile == "vless-reality-vision":
            return ClientTransport(profile=profile, server_name=name, public_key=self.public_key, short_id=SHORT_ID)
        if profile.endswith("-ws-tls"):
            return ClientTransport(profile=profile, server_name=name, ws_path=WS_PATH,
                                   certificate_sha256=self.certificate.sha256)
        return ClientTransport()


def trusting(profile_text: str, kind: str) -> str:
    """The served profile with the bench's self-signed certificate trusted (what no real profile does)."""
    if kind == "sing-box":
        config = json.loads(profile_text)
        for outbound in config["outbounds"]:
            if outbound.get("tls", {}).get("enabled") and "reality" not in outbound["tls"]:
                outbound["tls"]["insecure"] = True
        return json.dumps(config)
    config = yaml.safe_load(profile_text)
    for proxy in config["proxies"]:
        if proxy.get("tls") and "reality-opts" not in proxy:
            proxy["skip-cert-verify"] = True
    return yaml.safe_dump(config, allow_unicode=True)


def apps(node: Node, profile: str):  # noqa: ANN201
    """(app name, context manager with .socks_port) for every app that speaks this profile."""
    endpoints = [node.endpoint(p) for p in PROFILES]
    out = [("xray", lambda: V2RayClient(protocol_of(profile), "127.0.0.1", node.ports[profile], USER,
                                        transport=node.transport(profile), core="xray"))]
    if profile in ("vmess", "vmess-ws-tls"):  # V2Ray 4.34's VLESS does not talk to Xray 26's
        out.append(("v2ray", lambda: V2RayClient("vmess", "127.0.0.1", node.ports[profile], USER,
                                                 transport=node.transport(profile), core="v2ray")))
    if sing_box_binary():
        out.append(("sing-box", lambda: SingBoxClient(trusting(render_sing_box(endpoints, USER), "sing-box"),
                                                      profile)))
    if mihomo_binary():
        out.append(("mihomo", lambda: MihomoClient(trusting(render_clash(endpoints, USER), "clash"), profile)))
    return out


def download(socks_port: int, url: str, size: int) -> float:
    started = time.monotonic()
    done = subprocess.run(["curl", "-sS", "-o", "/dev/null", "--socks5-hostname", f"127.0.0.1:{socks_port}", url,
                           "-w", "%{size_download}"], capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - started
    if done.stdout.strip() != str(size):
        raise RuntimeError(f"downloaded {done.stdout!r} of {size} bytes: {done.stderr.strip()}")
    return seconds


def warm(app, url: str, what: str, tries: int = 3) -> None:  # noqa: ANN001
    """One small download first (the app's first connection and handshake), a few tries: an app can open its
    local port a moment before it forwards."""
    for attempt in range(tries):
        try:
            download(app.socks_port, url, 1000)
            return
        except RuntimeError as exc:
            if attempt == tries - 1:
                raise RuntimeError(f"{what}: {exc}\n{app.log()[-1500:]}") from None
            time.sleep(0.5)


async def amain(args: argparse.Namespace, web) -> dict[tuple[str, str], list[float]]:  # noqa: ANN001
    workdir = Path(tempfile.mkdtemp(prefix="vpnfleet-transports-"))
    workdir.chmod(0o701)  # the core's unprivileged user passes through it (agent/dataplane_user.py)
    node = Node(workdir)
    size = args.size_mb * 1_000_000
    rates: dict[tuple[str, str], list[float]] = {}
    with node.target:
        try:
            await node.component.apply(node.part())
            url = web.url(size)
            for profile in PROFILES:
                for name, make in apps(node, profile):
                    with make() as app:
                        warm(app, web.url(1000), f"{profile} through {name}")
                        for _ in range(args.rounds):
                            seconds = await asyncio.to_thread(download, app.socks_port, url, size)
                            rates.setdefault((profile, name), []).append(size / 1e6 / seconds)
                    log(f"{profile:22} {name:9} {statistics.median(rates[(profile, name)]):7.0f} MB/s")
        finally:
            await node.component.close()
            await node.component.apply(None)
    return rates


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mb", type=int, default=100)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    web = enter_for_benchmark()
    if xray_binary() is None:
        print("bench/transports.py needs xray (`make xray`, or $VPNFLEET_XRAY)", file=sys.stderr)
        return 2
    rates = asyncio.run(amain(args, web))
    apps_seen = sorted({a for _, a in rates}, key=("xray", "v2ray", "sing-box", "mihomo").index)
    print(f"download of {args.size_mb} MB per (transport, app), median MB/s of {args.rounds} rounds, same run; "
          "Xray 26 node, loopback")
    print(f"  {'transport':22}" + "".join(f"{a:>10}" for a in apps_seen))
    for profile in PROFILES:
        cells = [f"{statistics.median(rates[(profile, a)]):10.0f}" if (profile, a) in rates else f"{'-':>10}"
                 for a in apps_seen]
        print(f"  {profile:22}" + "".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
