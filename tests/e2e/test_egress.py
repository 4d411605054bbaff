"""A subscriber's tunnel reaches the internet and nothing else: real V2Ray, real WireGuard, real traffic.

Two EC2 nodes (moto; cloud-init played from the user data) whose agents and V2Rays run in network
namespaces of their own; the controller reaches them over unix sockets. Around node A, every host is a
namespace this test made:

    subscriber 198.51.100.2 ──── 198.51.100.1  node A  203.0.113.1 ──── 203.0.113.10  the "internet"
                 198.51.100.130 ─ 198.51.100.129 node B     10.213.0.1 ──── 10.213.0.10   a private host (the VPC)
    WireGuard client 192.0.2.2 ── 192.0.2.1  (node A)    169.254.0.1 ──── 169.254.169.254 "instance metadata"
                                       node B 198.18.0.1 ──── 198.18.0.10 (the internet host again)

Node A also serves HTTP on all its own addresses (port 8081), and resolves vpc.internal.test to the
private host (/etc/netns/<node>/hosts). Each subscriber's V2Ray client is built from the links of their own
subscription URL (only the host is replaced by node A's address here, since EC2's public address is moto's).
Every target that must be blocked through a tunnel is first shown reachable from the node itself, so the
test proves the policy, not a broken network.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from tests.agent.netns import Lab, missing_prerequisite
from tests.controller_process import ControllerProcess, wait_for
from tests.e2e.test_ec2_node import REGION, CloudInit, ec2_config
from tests.e2e.test_wireguard_tunnel import bring_up_client
from tests.v2ray_lab import client_config, core_binary, parse_link

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(missing_prerequisite() is not None, reason=str(missing_prerequisite())),
    pytest.mark.skipif(shutil.which("v2ray") is None, reason="needs the v2ray binary (Debian package v2ray)"),
]

INTERNET, PRIVATE, METADATA = "203.0.113.10", "10.213.0.10", "169.254.169.254"
INTERNET_B = "198.18.0.10"  # the internet host as node B reaches it
NODE_A, NODE_B = "198.51.100.1", "198.51.100.129"
WEB_PORT, NODE_PORT, REALITY_PORT = 8080, 8081, 8443
MB = 1_000_000
HIDDEN_UUID = "6f1c2a43-9a0e-4c55-b0f1-3d2b6b7e8a90"


def links(ctl: ControllerProcess, client: dict) -> dict[tuple[str, str], str]:
    """{(node name, protocol): share link} from the subscriber's own subscription URL (no API key)."""
    short = ctl.api.get(f"/api/v1/clients/{client['id']}").json()["short_uuid"]
    r = ctl.api.get(f"/sub/{short}", headers={"X-API-Key": "", "User-Agent": "v2rayNG/1.8"})
    assert r.status_code == 200, r.text
    out = {}
    for link in base64.b64decode(r.text).decode().split():
        if link.startswith("vmess://"):
            name = json.loads(base64.b64decode(link[len("vmess://"):]))["ps"]
        else:
            name = urllib.parse.unquote(urllib.parse.urlsplit(link).fragment)
        node_name, protocol = name.rsplit(" ", 1)
        out[(node_name, protocol)] = link
    return out


class Subscriber:
    """A client app in the subscriber's namespace, built from a share link as served (V2Ray for VMess, Xray for
    VLESS REALITY), connecting to `host` (EC2's public address is moto's): SOCKS for traffic, plus a
    dokodemo-door that tunnels a local port to the node's V2Ray API port (what an attacker would set up)."""

    def __init__(self, lab: Lab, ns: str, workdir: Path, host: str, link: str, api_port: int,
                 uuid: str | None = None) -> None:
        self.lab, self.ns = lab, ns
        self.socks_port, self.api_tunnel = 1080 + len(lab.processes), 2080 + len(lab.processes)
        parsed = parse_link(link)
        core = "xray" if parsed.protocol == "vless" else "v2ray"
        config = client_config(parsed.protocol, host, parsed.port, uuid or parsed.uuid, self.socks_port,
                               transport=parsed.transport, core=core)
        config["inbounds"].append({"listen": "127.0.0.1", "port": self.api_tunnel, "protocol": "dokodemo-door",
                                   "settings": {"address": "127.0.0.1", "port": api_port, "network": "tcp"}})
        path = workdir / f"client-{self.socks_port}.json"
        path.write_text(json.dumps(config))
        self.proc = lab.spawn(ns, [core_binary(core), "-config", str(path)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for(lambda: run_in(lab, ns, "open", str(self.socks_port))["ok"], 10, message="client SOCKS port open")

    def fetch(self, url: str, timeout: float = 3.0) -> dict:
        return run_in(self.lab, self.ns, "fetch", url, str(self.socks_port), str(timeout), timeout=timeout)

    def reaches(self, url: str, size: int | None = None, timeout: float = 3.0) -> bool:
        got = self.fetch(url, timeout)
        return got["ok"] and (size is None or got["bytes"] == size)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(5)


def run_in(lab: Lab, ns: str, *args: str, timeout: float = 5.0) -> dict:
    done = lab.exec(ns, [sys.executable, "-m", "tests.egress_lab", *args], timeout=timeout + 20, check=False)
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"ok": False, "error": f"no answer: {done.stderr[-300:]}"}


def serve(lab: Lab, ns: str, host: str, port: int) -> None:
    lab.spawn(ns, [sys.executable, "-m", "tests.v2ray_lab", "serve", host, str(port)],
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(lambda: run_in(lab, ns, "fetch", f"http://{host if host != '0.0.0.0' else '127.0.0.1'}:{port}/bytes/1")
             ["ok"], 10, message=f"server {host}:{port} in {ns}")


def v2ray_ok(ctl: ControllerProcess, node_id: str) -> bool:
    agent = ctl.node(node_id)["agent"]
    return agent["in_sync"] and {c["name"]: c["state"] for c in agent["components"]}.get("v2ray") == "ok"


def test_tunnels_reach_the_internet_and_nothing_on_or_behind_the_node(tmp_path: Path, moto_endpoint: str) -> None:
    lab = Lab(tmp_path)
    socks = tmp_path / "s"
    socks.mkdir()
    controller = ControllerProcess(tmp_path / "data", config=ec2_config(tmp_path, moto_endpoint), env={
        "AWS_EC2_METADATA_DISABLED": "true", "VPNFLEET_V2RAY_ENABLED": "1",
        # REALITY borrows the handshake of a TLS 1.3 site on the test's own internet host
        "VPNFLEET_V2RAY_REALITY_DEST": f"{INTERNET}:{REALITY_PORT}", "VPNFLEET_V2RAY_REALITY_SERVER_NAMES": "reality.test",
        "VPNFLEET_GRPC_ADDR": f"unix:{socks}/grpc.sock", "VPNFLEET_ENROLL_ADDR": f"unix:{socks}/enroll.sock"})
    boots: list[CloudInit] = []
    etc_netns: Path | None = None
    try:
        node_a, node_b, sub = lab.netns("na"), lab.netns("nb"), lab.netns("sub")
        inet, vpc, imds, wgc = lab.netns("inet"), lab.netns("vpc"), lab.netns("imds"), lab.netns("wgc")
        lab.veth(sub, "vs-a", "198.51.100.2/25", node_a, "vs-n", f"{NODE_A}/25")
        lab.veth(sub, "vs-b", "198.51.100.130/25", node_b, "vs-n", f"{NODE_B}/25")
        lab.veth(node_a, "vi-n", "203.0.113.1/24", inet, "vi-i", f"{INTERNET}/24")
        lab.veth(node_a, "vp-n", "10.213.0.1/24", vpc, "vp-v", f"{PRIVATE}/24")
        lab.veth(node_a, "vm-n", "169.254.0.1/16", imds, "vm-m", f"{METADATA}/16")
        lab.veth(node_a, "vw-n", "192.0.2.1/24", wgc, "vw-c", "192.0.2.2/24")
        lab.veth(node_b, "vj-n", "198.18.0.1/24", inet, "vj-i", f"{INTERNET_B}/24")  # node B's own uplink
        # a name that resolves to the private host, on node A only (ip netns exec bind-mounts these files)
        etc_netns = Path("/etc/netns") / node_a
        etc_netns.mkdir(parents=True)
        (etc_netns / "hosts").write_text(f"127.0.0.1 localhost\n{PRIVATE} vpc.internal.test\n")
        serve(lab, inet, "0.0.0.0", WEB_PORT)
        lab.spawn(inet, [sys.executable, "-m", "tests.v2ray_lab", "serve-tls", "0.0.0.0", str(REALITY_PORT),
                         "reality.test"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        lab.ip(node_b, "route", "add", f"{INTERNET}/32", "via", INTERNET_B)  # node B's way to the REALITY target
        serve(lab, vpc, PRIVATE, WEB_PORT)
        serve(lab, imds, METADATA, 80)
        serve(lab, node_a, "0.0.0.0", NODE_PORT)  # a service on the node itself, on all its addresses

        controller.start()
        api = controller.api
        ids = {}
        for name, ns in (("node-a", node_a), ("node-b", node_b)):
            nid = controller.create_node(REGION, name=name)["id"]
            node = wait_for(lambda: (n := controller.node(nid))["instance_id"] and n, 20, message="launched")
            boot = CloudInit(moto_endpoint, node["instance_id"], tmp_path / name)
            boots.append(boot)
            boot.start_agent(netns=ns)
            ids[name] = nid
        alice = api.post("/api/v1/clients", json={"username": "alice", "days": 30}).json()
        bob = api.post("/api/v1/clients", json={"username": "bob", "days": 30}).json()
        for nid in ids.values():
            controller.wait_running(nid)
            wait_for(lambda: v2ray_ok(controller, nid), 30, message="V2Ray OK on the node")

        config_a = json.loads((tmp_path / "node-a" / "state" / "v2ray" / "config.json").read_text())
        api_port = next(i["port"] for i in config_a["inbounds"] if i["tag"] == "api")
        targets = {  # what a tunnel must not reach: all reachable from node A itself
            "the node's loopback": f"http://127.0.0.1:{NODE_PORT}/bytes/10",
            "the node's own address": f"http://203.0.113.1:{NODE_PORT}/bytes/10",
            "0.0.0.0 (the node)": f"http://0.0.0.0:{NODE_PORT}/bytes/10",
            "localhost by name": f"http://localhost:{NODE_PORT}/bytes/10",
            "the private host": f"http://{PRIVATE}:{WEB_PORT}/bytes/10",
            "a name resolving to the private host": f"http://vpc.internal.test:{WEB_PORT}/bytes/10",
            "instance metadata": f"http://{METADATA}/bytes/10",
        }
        for what, url in targets.items():
            assert run_in(lab, node_a, "fetch", url)["ok"], f"{what} must be reachable from the node itself"
        assert run_in(lab, node_a, "stats", str(api_port))["ok"], "V2Ray's API answers on the node itself"

        # -- V2Ray: the internet works and is counted; nothing on or behind the node is reachable --------------
        a_links = links(controller, alice)
        assert set(a_links) == {("node-a", "vmess"), ("node-a", "vless"), ("node-b", "vmess"), ("node-b", "vless")}
        alice_a = Subscriber(lab, sub, tmp_path, NODE_A, a_links[("node-a", "vmess")], api_port)
        assert alice_a.reaches(f"http://{INTERNET}:{WEB_PORT}/bytes/{MB}", MB)
        wait_for(lambda: api.get(f"/api/v1/clients/{alice['id']}").json()["used_download_bytes"] >= MB, 20,
                 message="alice's download counted")
        for what, url in targets.items():
            assert not alice_a.reaches(url), f"a tunnel reached {what}"
        assert not alice_a.reaches(f"http://[::ffff:127.0.0.1]:{NODE_PORT}/bytes/10"), "IPv4-mapped loopback"

        # -- the attack of the issue, replayed through the tunnel: the API is out of reach -----------------------
        before = api.get(f"/api/v1/clients/{alice['id']}").json()["used_download_bytes"]
        result = run_in(lab, sub, "attack", str(alice_a.api_tunnel), "vmess", "hidden@x", HIDDEN_UUID, bob["id"],
                        timeout=20)
        assert set(result) == {"query_stats", "add_user", "remove_user"} and "ok" not in result.values(), result
        assert alice_a.reaches(f"http://{INTERNET}:{WEB_PORT}/bytes/{2 * MB}", 2 * MB)
        wait_for(lambda: api.get(f"/api/v1/clients/{alice['id']}").json()["used_download_bytes"] >= before + 2 * MB,
                 20, message="alice's next download counted in full (no counter was reset)")
        hidden = Subscriber(lab, sub, tmp_path, NODE_A, a_links[("node-a", "vmess")], api_port, uuid=HIDDEN_UUID)
        assert not hidden.reaches(f"http://{INTERNET}:{WEB_PORT}/bytes/1000"), "no hidden user was added"
        hidden.stop()
        b_links = links(controller, bob)
        bob_a = Subscriber(lab, sub, tmp_path, NODE_A, b_links[("node-a", "vless")], api_port)
        assert bob_a.reaches(f"http://{INTERNET}:{WEB_PORT}/bytes/1000", 1000), "bob was not removed"

        # -- per-node ids: node A's id does not work on node B; node B's does -----------------------------------
        assert parse_link(a_links[("node-a", "vmess")]).uuid != parse_link(a_links[("node-b", "vmess")]).uuid
        wrong = Subscriber(lab, sub, tmp_path, NODE_B, a_links[("node-b", "vless")], api_port,
                           uuid=parse_link(a_links[("node-a", "vless")]).uuid)
        assert not wrong.reaches(f"http://{INTERNET}:{WEB_PORT}/bytes/1000")
        right = Subscriber(lab, sub, tmp_path, NODE_B, a_links[("node-b", "vless")], api_port)
        assert right.reaches(f"http://{INTERNET_B}:{WEB_PORT}/bytes/1000", 1000)
        assert not right.reaches(f"http://127.0.0.1:{NODE_PORT}/bytes/10")  # node B holds the policy too

        # -- WireGuard with NAT: the internet, not the private host or the metadata service ---------------------
        iface = lab.iface_name("wge")
        srv = api.post("/api/v1/wireguard/servers", json={
            "node_id": ids["node-a"], "name": "edge", "interface": iface, "listen_port": 51820,
            "ipv4_address": "10.99.0.1/24", "nat": True, "endpoint_host": "192.0.2.1"}).json()
        peer = api.post("/api/v1/wireguard/clients", json={"server_id": srv["id"], "name": "carol"}).json()
        controller.wait_running(ids["node-a"])
        wg = bring_up_client(lab, wgc, "wgc", peer["config"], tmp_path)
        for cidr in (f"{INTERNET}/32", f"{PRIVATE}/32", f"{METADATA}/32"):
            lab.ip(wgc, "route", "add", cidr, "dev", wg)
        wait_for(lambda: run_in(lab, wgc, "fetch", f"http://{INTERNET}:{WEB_PORT}/bytes/{MB}")["ok"], 20,
                 message="the WireGuard peer reaches the internet host")
        assert not run_in(lab, wgc, "fetch", f"http://{PRIVATE}:{WEB_PORT}/bytes/10")["ok"], "peer reached the VPC"
        assert not run_in(lab, wgc, "fetch", f"http://{METADATA}/bytes/10")["ok"], "peer reached the metadata host"
        # the node's loopback: even a peer that sends to 127.0.0.1 through the tunnel (route_localnet on its
        # side) gets no answer: the node drops loopback destinations arriving on the interface
        lab.exec(wgc, ["sysctl", "-qw", f"net.ipv4.conf.{wg}.route_localnet=1"])
        lab.ip(wgc, "route", "replace", "127.0.0.1/32", "dev", wg, "table", "local")
        assert not run_in(lab, wgc, "fetch", f"http://127.0.0.1:{NODE_PORT}/bytes/10")["ok"], "peer reached loopback"
    finally:
        for boot in boots:
            boot.stop()
        controller.cleanup()
        lab.cleanup()
        if etc_netns is not None:
            shutil.rmtree(etc_netns, ignore_errors=True)
