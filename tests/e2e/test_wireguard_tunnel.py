"""WireGuard end to end through real tunnels: controller -> agent (in a node namespace) -> wireguard-go,
with WireGuard clients in their own namespaces configured from the configs the API hands out.

The controller listens for agents on unix sockets (not namespaced), so the agent inside the node namespace
reaches it without any address on the host; every link and address lives in namespaces the test creates.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.agent.netns import Lab, missing_prerequisite
from tests.controller_process import ControllerProcess, wait_for
from tests.e2e.test_ec2_node import REGION, CloudInit, ec2_config

pytestmark = [
    pytest.mark.skipif(missing_prerequisite() is not None, reason=str(missing_prerequisite())),
    pytest.mark.skipif(shutil.which("ping") is None, reason="ping not installed (make test installs iputils-ping)"),
]

WG_QUICK_ONLY = ("address", "dns", "mtu", "table", "preup", "postup", "predown", "postdown", "saveconfig")


def bring_up_client(lab: Lab, ns: str, prefix: str, config: str, workdir: Path) -> str:
    """What the WireGuard app does with the downloaded config: wireguard-go + `wg setconf` + address + route."""
    name = lab.iface_name(prefix)
    lab.wireguard_go(ns, name)
    lines = config.splitlines()
    address = next(l.split("=", 1)[1].strip() for l in lines if l.lower().startswith("address"))
    conf = workdir / f"{name}.conf"
    conf.write_text("\n".join(l for l in lines if l.split("=", 1)[0].strip().lower() not in WG_QUICK_ONLY) + "\n")
    lab.exec(ns, ["wg", "setconf", name, str(conf)])
    for addr in address.split(","):
        lab.ip(ns, "addr", "add", addr.strip(), "dev", name)
    lab.ip(ns, "link", "set", name, "up")
    lab.ip(ns, "route", "add", "10.99.0.0/24", "dev", name)
    return name


def ping(lab: Lab, ns: str, host: str = "10.99.0.1") -> bool:
    return lab.exec(ns, ["ping", "-c", "1", "-W", "2", host], check=False).returncode == 0


def handshake(lab: Lab, ns: str, iface: str, public_key: str) -> int:
    out = lab.exec(ns, ["wg", "show", iface, "latest-handshakes"]).stdout
    return next((int(line.split()[1]) for line in out.splitlines() if line.startswith(public_key)), 0)


def test_wireguard_through_real_tunnels(tmp_path: Path, moto_endpoint: str) -> None:
    lab = Lab(tmp_path)
    socks = Path(tmp_path / "s")
    socks.mkdir()
    controller = ControllerProcess(tmp_path / "data", config=ec2_config(tmp_path, moto_endpoint), env={
        "AWS_EC2_METADATA_DISABLED": "true",
        "VPNFLEET_GRPC_ADDR": f"unix:{socks}/grpc.sock", "VPNFLEET_ENROLL_ADDR": f"unix:{socks}/enroll.sock"})
    boot = None
    try:
        node_ns, a_ns, b_ns = lab.netns("node"), lab.netns("ca"), lab.netns("cb")
        lab.veth(node_ns, "va-n", "10.222.1.1/24", a_ns, "va-c", "10.222.1.2/24")
        lab.veth(node_ns, "vb-n", "10.222.2.1/24", b_ns, "vb-c", "10.222.2.2/24")
        lab.ip(b_ns, "route", "add", "10.222.1.1/32", "via", "10.222.2.1")

        # a node whose machine is this namespace: cloud-init played from the user data EC2 stored
        controller.start()
        api = controller.api
        nid = controller.create_node(REGION)["id"]
        node = wait_for(lambda: (n := controller.node(nid))["instance_id"] and n, 20, message="launched")
        boot = CloudInit(moto_endpoint, node["instance_id"], tmp_path / "node")
        boot.start_agent(netns=node_ns)
        controller.wait_running(nid)

        iface = lab.iface_name("wgs")
        srv = api.post("/api/v1/wireguard/servers", json={
            "node_id": nid, "name": "edge", "interface": iface, "listen_port": 51820, "ipv4_address": "10.99.0.1/24",
            "nat": False, "endpoint_host": "10.222.1.1"}).json()
        a = api.post("/api/v1/wireguard/clients", json={"server_id": srv["id"], "name": "alice"}).json()
        b = api.post("/api/v1/wireguard/clients", json={"server_id": srv["id"], "name": "bob"}).json()
        node = controller.wait_running(nid)  # in sync: the node applied the interface and both peers
        assert {c["name"]: c["state"] for c in node["agent"]["components"]}["wireguard"] == "ok"

        bring_up_client(lab, a_ns, "wga", a["config"], tmp_path)
        bring_up_client(lab, b_ns, "wgb", b["config"], tmp_path)
        assert wait_for(lambda: ping(lab, a_ns), 15, message="alice pings through the tunnel")
        assert wait_for(lambda: ping(lab, b_ns), 15, message="bob pings through the tunnel")

        # a TCP transfer through alice's tunnel lands on alice at the controller, not on bob
        lab.python(node_ns, "echo", "5001")
        wait_for(lambda: lab.probe(a_ns, "10.99.0.1", 5001, size=1_000_000, timeout=10)["ok"], 20,
                 message="1 MB through the tunnel")
        got = wait_for(lambda: (c := api.get(f"/api/v1/wireguard/clients/{a['id']}").json())["bytes_received"]
                       > 1_000_000 and c, 20, message="alice's transfer at the controller")
        assert got["last_handshake"] is not None
        bob = api.get(f"/api/v1/wireguard/clients/{b['id']}").json()
        assert bob["bytes_received"] < 100_000
        usage_status = api.get(f"/api/v1/wireguard/servers/{srv['id']}/status").json()
        assert usage_status["interface_stats"]["rx_bytes"] >= got["bytes_received"]

        # disabling bob cuts only bob: alice keeps her session (same handshake) and her traffic
        alice_handshake = handshake(lab, node_ns, iface, a["public_key"])
        assert alice_handshake > 0
        api.post(f"/api/v1/wireguard/clients/{b['id']}/disable")
        controller.wait_running(nid)
        wait_for(lambda: not ping(lab, b_ns), 15, message="bob cut off")
        assert ping(lab, a_ns)
        assert handshake(lab, node_ns, iface, a["public_key"]) == alice_handshake

        # the controller going away leaves the tunnel up
        controller.stop()
        assert ping(lab, a_ns) and lab.probe(a_ns, "10.99.0.1", 5001, size=10_000)["ok"]
        controller.start()
        controller.wait_running(nid)
        assert ping(lab, a_ns)
        api = controller.api
        api.post(f"/api/v1/wireguard/clients/{b['id']}/enable")
        wait_for(lambda: ping(lab, b_ns), 20, message="bob back after enable")
    finally:
        if boot:
            boot.stop()
        controller.cleanup()
        lab.cleanup()
