"""WireGuard servers and clients through the REST API (seed 001 shapes): keys, addresses, conflicts, configs.

The node here is stopped, so nothing touches the network; tunnels through real wireguard-go are tested with
the agent's driver in namespaces.
"""

from __future__ import annotations

import base64

import pytest

from tests.controller_process import ControllerProcess, wait_for


@pytest.fixture(scope="module")
def ctl(shared_controller: ControllerProcess) -> ControllerProcess:
    return shared_controller


@pytest.fixture(scope="module")
def node_id(ctl: ControllerProcess) -> str:
    nid = ctl.wait_running(ctl.create_node(name="wg-node")["id"])["id"]
    ctl.api.post(f"/api/v1/nodes/{nid}/stop")
    wait_for(lambda: ctl.node(nid)["status"] == "stopped", 20, message="stopped")
    return nid


def _server(ctl: ControllerProcess, nid: str, **over) -> dict:
    body = {"node_id": nid, "name": "wg0", "interface": "wg0", "listen_port": 51820,
            "ipv4_address": "10.8.0.1/24", "ipv6_address": "fd00:8::1/64", "dns_servers": ["1.1.1.1"], **over}
    return ctl.api.post("/api/v1/wireguard/servers", json=body)


def test_servers_validate_and_bump_the_node_revision(ctl: ControllerProcess, node_id: str) -> None:
    before = ctl.node(node_id)["agent"]["desired_revision"]
    r = _server(ctl, node_id)
    assert r.status_code == 201, r.text
    srv = r.json()
    assert len(base64.b64decode(srv["public_key"])) == 32 and "private_key" not in srv
    assert srv["status"] == "running" and srv["config"]["mtu"] == 1420 and srv["clients_count"] == 0
    assert ctl.node(node_id)["agent"]["desired_revision"] == before + 1

    # what is already taken on the node: 409, naming the field
    for over, field in [({"interface": "wg0", "listen_port": 51821, "ipv4_address": "10.9.0.1/24",
                          "ipv6_address": None}, "interface"),
                        ({"interface": "wg1", "ipv4_address": "10.9.0.1/24", "ipv6_address": None}, "listen_port"),
                        ({"interface": "wg1", "listen_port": 51821, "ipv4_address": "10.8.0.129/25",
                          "ipv6_address": None}, "ipv4_address")]:
        r = _server(ctl, node_id, **over)
        assert r.status_code == 409, (over, r.text)
        assert field in r.json()["error"]["details"], (over, r.json())
    # malformed: 422, naming the field
    for over, field in [({"interface": "wg1", "listen_port": 51821, "ipv4_address": "10.9.0.0/24"}, "ipv4_address"),
                        ({"interface": "wg1", "listen_port": 51821, "ipv4_address": "300.1.1.1/24"}, "ipv4_address"),
                        ({"interface": "wg1", "listen_port": 51821, "ipv4_address": "fd00::1/64"}, "ipv4_address"),
                        ({"interface": "this-name-is-too-long"}, "interface"),
                        ({"interface": "wg1", "listen_port": 70000}, "listen_port"),
                        ({"node_id": "00000000-0000-0000-0000-000000000000", "interface": "wg1",
                          "listen_port": 51821}, "node_id"),
                        ({"interface": "wg1", "listen_port": 51821, "ipv4_address": None, "ipv6_address": None},
                         "ipv4_address"),
                        ({"interface": "wg1", "listen_port": 51821, "dns_servers": ["dns.example"]}, "dns_servers")]:
        r = _server(ctl, node_id, **over)
        assert r.status_code == 422, (over, r.text)
        assert field in r.json()["error"]["details"], (over, r.json())

    listed = ctl.api.get("/api/v1/wireguard/servers", params={"node_id": node_id}).json()
    assert listed["total"] == 1 and listed["items"][0]["interface"] == "wg0"


def test_clients_get_addresses_keys_config_and_qr(ctl: ControllerProcess, node_id: str) -> None:
    api = ctl.api
    srv = _server(ctl, node_id, name="small", interface="wg9", listen_port=51829, ipv4_address="10.77.0.1/29",
                  ipv6_address=None).json()
    made = []
    for i in range(5):  # a /29 holds 5 clients beside the server
        r = api.post("/api/v1/wireguard/clients", json={"server_id": srv["id"], "name": f"c{i}"})
        assert r.status_code == 201, r.text
        made.append(r.json())
    assert [c["ipv4_address"] for c in made] == [f"10.77.0.{i}/32" for i in range(2, 7)]
    full = api.post("/api/v1/wireguard/clients", json={"server_id": srv["id"], "name": "c5"})
    assert full.status_code == 422 and "full" in full.json()["error"]["message"]

    c0 = made[0]
    assert c0["config"].startswith("[Interface]") and f"PublicKey = {srv['public_key']}" in c0["config"]
    assert f"Endpoint = 127.0.0.1:{srv['listen_port']}" in c0["config"] and "PresharedKey" in c0["config"]
    assert c0["qr_code"].startswith("data:image/png;base64,")
    conf = api.get(f"/api/v1/wireguard/clients/{c0['id']}/config")
    assert conf.status_code == 200 and conf.text == c0["config"]
    assert ".conf" in conf.headers["content-disposition"]

    # release and reuse: the lowest free address comes back
    assert api.delete(f"/api/v1/wireguard/clients/{made[1]['id']}").status_code == 204
    again = api.post("/api/v1/wireguard/clients", json={"server_id": srv["id"], "name": "again"}).json()
    assert again["ipv4_address"] == "10.77.0.3/32"

    # given addresses are checked
    api.delete(f"/api/v1/wireguard/clients/{made[4]['id']}")
    for addr, status in [("10.77.0.2", 409), ("10.77.0.1", 422), ("10.78.0.2", 422), ("nonsense", 422)]:
        r = api.post("/api/v1/wireguard/clients", json={"server_id": srv["id"], "name": "x", "ipv4_address": addr})
        assert r.status_code == status and "ipv4_address" in r.json()["error"]["details"], (addr, r.text)

    # bring-your-own key: only the public key is stored; a malformed key is refused
    r = api.post("/api/v1/wireguard/clients", json={"server_id": srv["id"], "name": "byok", "public_key": "bad"})
    assert r.status_code == 422 and "public_key" in r.json()["error"]["details"]
    pub = made[2]["public_key"]
    dup = api.post("/api/v1/wireguard/clients", json={"server_id": srv["id"], "name": "dup", "public_key": pub})
    assert dup.status_code == 409 and "public_key" in dup.json()["error"]["details"]


def test_disable_enable_and_status(ctl: ControllerProcess, node_id: str) -> None:
    api = ctl.api
    srv = _server(ctl, node_id, name="st", interface="wg7", listen_port=51827, ipv4_address="10.66.0.1/24",
                  ipv6_address="fd00:66::1/64").json()
    c = api.post("/api/v1/wireguard/clients", json={"server_id": srv["id"], "name": "phone"}).json()
    assert c["ipv6_address"] == "fd00:66::2/128"
    rev = ctl.node(node_id)["agent"]["desired_revision"]
    assert api.post(f"/api/v1/wireguard/clients/{c['id']}/disable").json()["status"] == "disabled"
    assert ctl.node(node_id)["agent"]["desired_revision"] == rev + 1
    assert api.post(f"/api/v1/wireguard/clients/{c['id']}/enable").json()["status"] == "active"
    status = api.get(f"/api/v1/wireguard/servers/{srv['id']}/status").json()
    assert status["clients"][0]["public_key"] == c["public_key"] and status["interface_stats"]["rx_bytes"] == 0
    assert api.post(f"/api/v1/wireguard/servers/{srv['id']}/stop").json()["status"] == "stopped"
    assert api.put(f"/api/v1/wireguard/servers/{srv['id']}", json={"ipv4_address": "10.67.0.1/24"}).status_code == 409
    assert api.delete(f"/api/v1/wireguard/servers/{srv['id']}").status_code == 204
    assert api.get(f"/api/v1/wireguard/clients/{c['id']}").status_code == 404
    # a non-numeric id is not an id at all: 422 naming it (it was a 404 before the typed layer)
    bad = api.get("/api/v1/wireguard/servers/abc")
    assert bad.status_code == 422 and "id" in bad.json()["error"]["details"], bad.text


def test_ipv6_pools_and_allocations(ctl: ControllerProcess) -> None:
    api = ctl.api
    r = api.post("/api/v1/ipv6/pools", json={"name": "main", "prefix": "2001:db8::/60", "prefix_length": 62,
                                              "reserved_prefixes": 1, "description": "test"})
    assert r.status_code == 201, r.text
    pool = r.json()
    assert (pool["total_prefixes"], pool["allocated_prefixes"], pool["available_prefixes"]) == (4, 0, 3)
    assert api.post("/api/v1/ipv6/pools", json={"name": "main", "prefix": "2001:db9::/48"}).status_code == 409
    for body, field in [({"name": "x", "prefix": "10.0.0.0/8"}, "prefix"),
                        ({"name": "x", "prefix": "2001:db8::/48", "prefix_length": 40}, "prefix_length"),
                        ({"name": "x", "prefix": "2001:db8::1/48"}, "prefix")]:
        r = api.post("/api/v1/ipv6/pools", json=body)
        assert r.status_code == 422 and field in r.json()["error"]["details"], r.text

    got = [api.post("/api/v1/ipv6/allocations", json={"pool_id": pool["id"], "client_name": f"c{i}"}).json()
           for i in range(3)]
    assert [g["allocated_prefix"] for g in got] == ["2001:db8:0:4::/62", "2001:db8:0:8::/62", "2001:db8:0:c::/62"]
    full = api.post("/api/v1/ipv6/allocations", json={"pool_id": pool["id"]})
    assert full.status_code == 422
    assert api.delete(f"/api/v1/ipv6/allocations/{got[1]['id']}").status_code == 204
    custom = api.post("/api/v1/ipv6/allocations", json={"pool_id": pool["id"], "custom_prefix": "2001:db8:0:c::/62"})
    assert custom.status_code == 409
    again = api.post("/api/v1/ipv6/allocations", json={"pool_id": pool["id"]}).json()
    assert again["allocated_prefix"] == "2001:db8:0:8::/62"
    assert api.delete(f"/api/v1/ipv6/pools/{pool['id']}").status_code == 409
    listed = api.get("/api/v1/ipv6/pools").json()["items"][0]
    assert listed["allocated_prefixes"] == 3 and len(listed["allocations"]) == 3
    assert api.get("/api/v1/ipv6/allocations", params={"pool_id": pool["id"]}).json()["total"] == 3
