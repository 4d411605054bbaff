"""The typed WireGuard and IPv6 API against a real controller: what used to be 500s or silent misreadings
(issue 10) is a 422 naming the field; ids are never reused; a subnet over the node's own networks is refused."""

from __future__ import annotations

import ipaddress
import socket

import psutil
import pytest

from tests.controller_process import ControllerProcess, wait_for

BIG = 2**64  # beyond a 64-bit column
#: not ASCII digits, or too many of them: "¹" (isdigit() but not int()), "١" (int() reads it as 1)
BAD_IDS = ["%C2%B9", "%D9%A1", "1" * 21, "abc", "0", "-1"]


@pytest.fixture(scope="module")
def ctl(shared_controller: ControllerProcess) -> ControllerProcess:
    return shared_controller


@pytest.fixture(scope="module")
def node_id(ctl: ControllerProcess) -> str:
    """A local node, stopped: nothing touches the network, and its networks are this machine's."""
    nid = ctl.wait_running(ctl.create_node(name="wg-validation")["id"])["id"]
    ctl.api.post(f"/api/v1/nodes/{nid}/stop")
    wait_for(lambda: ctl.node(nid)["status"] == "stopped", 20, message="stopped")
    return nid


@pytest.fixture(scope="module")
def server(ctl: ControllerProcess, node_id: str) -> dict:
    r = ctl.api.post("/api/v1/wireguard/servers", json={
        "node_id": node_id, "name": "val", "interface": "wgv0", "listen_port": 51840,
        "ipv4_address": "10.40.0.1/24", "ipv6_address": "fd00:40::1/64"})
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture(scope="module")
def client(ctl: ControllerProcess, server: dict) -> dict:
    r = ctl.api.post("/api/v1/wireguard/clients", json={"server_id": server["id"], "name": "peer"})
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture(scope="module")
def pool(ctl: ControllerProcess) -> dict:
    r = ctl.api.post("/api/v1/ipv6/pools", json={"name": "val", "prefix": "2001:db8:40::/48"})
    assert r.status_code == 201, r.text
    return r.json()


def _invalid(r, field: str) -> None:  # noqa: ANN001 - an httpx.Response
    assert r.status_code == 422, (r.request.method, r.request.url, r.status_code, r.text)
    body = r.json()["error"]
    assert body["code"] == "VALIDATION_ERROR" and field in body["details"], body
    assert r.headers.get("x-request-id") == body["request_id"]


def test_integers_beyond_64_bits_in_bodies_and_queries(ctl: ControllerProcess, server: dict, pool: dict) -> None:
    api = ctl.api
    for value in (BIG, -BIG, 0, "1", 1.5, True):
        _invalid(api.post("/api/v1/ipv6/allocations", json={"pool_id": value}), "pool_id")
        _invalid(api.post("/api/v1/wireguard/clients", json={"server_id": value, "name": "x"}), "server_id")
    _invalid(api.get("/api/v1/wireguard/clients", params={"server_id": str(BIG)}), "server_id")
    _invalid(api.get("/api/v1/ipv6/allocations", params={"pool_id": str(BIG)}), "pool_id")
    _invalid(api.post("/api/v1/ipv6/pools", json={"name": "big", "prefix": "2001:db8:41::/48",
                                                   "reserved_prefixes": BIG}), "reserved_prefixes")
    _invalid(api.post("/api/v1/ipv6/pools", json={"name": "big", "prefix": "2001:db8:41::/48",
                                                   "prefix_length": BIG}), "prefix_length")
    # the largest id is fine (and simply not there)
    r = api.post("/api/v1/ipv6/allocations", json={"pool_id": 2**63 - 1})
    assert r.status_code == 404 and "pool_id" in r.json()["error"]["details"], r.text


def test_integer_ids_are_ascii_digits(ctl: ControllerProcess, server: dict, client: dict, pool: dict) -> None:
    api = ctl.api
    for bad in BAD_IDS:
        for path in (f"/api/v1/wireguard/servers/{bad}", f"/api/v1/wireguard/servers/{bad}/status",
                     f"/api/v1/wireguard/clients/{bad}", f"/api/v1/wireguard/clients/{bad}/config",
                     f"/api/v1/ipv6/pools/{bad}"):
            _invalid(api.get(path), "id")
        _invalid(api.put(f"/api/v1/wireguard/servers/{bad}", json={"name": "renamed"}), "id")
        _invalid(api.delete(f"/api/v1/wireguard/clients/{bad}"), "id")
        _invalid(api.delete(f"/api/v1/ipv6/allocations/{bad}"), "id")
        _invalid(api.post(f"/api/v1/wireguard/servers/{bad}/stop"), "id")
    # nothing was read, renamed or stopped as "server 1" meanwhile
    got = api.get(f"/api/v1/wireguard/servers/{server['id']}").json()
    assert (got["name"], got["status"]) == (server["name"], "running")
    assert api.get(f"/api/v1/wireguard/servers/{2**63 - 1}").status_code == 404


def test_null_for_a_required_field_is_a_422(ctl: ControllerProcess, server: dict, client: dict) -> None:
    api = ctl.api
    for field in ("name", "interface", "listen_port", "dns_servers", "mtu", "persistent_keepalive", "allowed_ips",
                  "nat", "peer_to_peer", "auto_start", "description"):
        _invalid(api.put(f"/api/v1/wireguard/servers/{server['id']}", json={field: None}), field)
    for field in ("name", "allowed_ips", "dns_servers", "persistent_keepalive", "status", "description"):
        _invalid(api.put(f"/api/v1/wireguard/clients/{client['id']}", json={field: None}), field)
    # a server keeps at least one subnet
    _invalid(api.put(f"/api/v1/wireguard/servers/{server['id']}",
                     json={"ipv4_address": None, "ipv6_address": None}), "ipv4_address")
    assert api.get(f"/api/v1/wireguard/servers/{server['id']}").json() == \
        {k: v for k, v in server.items() if k != "clients_count"}
    # the nullable ones take null: the client loses its IPv6 address, the server its endpoint host
    r = api.put(f"/api/v1/wireguard/clients/{client['id']}", json={"ipv6_address": None})
    assert r.status_code == 200 and r.json()["ipv6_address"] is None and r.json()["ipv4_address"], r.text
    r = api.put(f"/api/v1/wireguard/clients/{client['id']}", json={"ipv6_address": client["ipv6_address"]})
    assert r.status_code == 200 and r.json()["ipv6_address"] == client["ipv6_address"], r.text
    r = api.put(f"/api/v1/wireguard/servers/{server['id']}", json={"endpoint_host": None, "name": "val"})
    assert r.status_code == 200 and r.json()["endpoint_host"] is None, r.text


def test_empty_and_unknown_query_values(ctl: ControllerProcess) -> None:
    api = ctl.api
    for path, param in [("/api/v1/wireguard/servers", "status"), ("/api/v1/wireguard/servers", "search"),
                        ("/api/v1/wireguard/servers", "node_id"), ("/api/v1/wireguard/clients", "status"),
                        ("/api/v1/wireguard/clients", "server_id"), ("/api/v1/ipv6/allocations", "pool_id"),
                        ("/api/v1/ipv6/pools", "search")]:
        _invalid(api.get(path, params={param: ""}), param)
    _invalid(api.get("/api/v1/wireguard/servers", params={"status": "AAA"}), "status")
    _invalid(api.get("/api/v1/wireguard/clients", params={"status": "running"}), "status")
    _invalid(api.get("/api/v1/wireguard/clients", params={"size": "501"}), "size")


def test_expiry_times_need_a_zone_and_a_range(ctl: ControllerProcess, server: dict) -> None:
    api = ctl.api
    for when in ("2030-01-01T00:00:00", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "soon"):
        _invalid(api.post("/api/v1/wireguard/clients", json={"server_id": server["id"], "name": "exp",
                                                              "expires_at": when}), "expires_at")
    r = api.post("/api/v1/wireguard/clients", json={"server_id": server["id"], "name": "exp",
                                                     "expires_at": "2030-01-01T02:00:00+02:00"})
    assert r.status_code == 201 and r.json()["expires_at"] == "2030-01-01T00:00:00Z", r.text
    assert api.delete(f"/api/v1/wireguard/clients/{r.json()['id']}").status_code == 204


def _this_machines_network() -> ipaddress.IPv4Network | None:
    """A non-loopback IPv4 network on an interface here (the test world's 203.0.113.0/24, or the host's)."""
    for addresses in psutil.net_if_addrs().values():
        for a in addresses:
            if a.family == socket.AF_INET and a.netmask:
                net = ipaddress.ip_interface(f"{a.address}/{a.netmask}").network
                if not net.is_loopback and net.prefixlen <= 29:
                    return net
    return None


def test_subnets_over_the_nodes_own_networks_are_refused(ctl: ControllerProcess, node_id: str,
                                                         server: dict) -> None:
    api = ctl.api
    body = {"node_id": node_id, "name": "over", "interface": "wgv1", "listen_port": 51841}
    for v4, v6, field in [("127.0.0.1/8", None, "ipv4_address"), ("169.254.169.1/24", None, "ipv4_address"),
                          (None, "fe80::1/64", "ipv6_address"), (None, "::ffff:10.0.0.1/120", "ipv6_address")]:
        r = api.post("/api/v1/wireguard/servers", json={**body, "ipv4_address": v4, "ipv6_address": v6})
        _invalid(r, field)
        assert "overlaps the node's own networks" in r.json()["error"]["message"]
    net = _this_machines_network()
    if net is not None:  # the local node's machine is this one: its interface networks are the node's
        inside = f"{net.network_address + 1}/{min(net.prefixlen + 1, 29)}"
        r = api.post("/api/v1/wireguard/servers", json={**body, "ipv4_address": inside})
        _invalid(r, "ipv4_address")
        assert "interface" in r.json()["error"]["message"], r.text
        _invalid(api.put(f"/api/v1/wireguard/servers/{server['id']}", json={"ipv4_address": inside}),
                 "ipv4_address")
    # its own unchanged subnet is no overlap; a subnet apart from the node is fine
    assert api.put(f"/api/v1/wireguard/servers/{server['id']}",
                   json={"ipv4_address": server["ipv4_address"], "name": "val"}).status_code == 200
    r = api.post("/api/v1/wireguard/servers", json={**body, "ipv4_address": "10.41.0.1/24"})
    assert r.status_code == 201, r.text
    assert api.delete(f"/api/v1/wireguard/servers/{r.json()['id']}").status_code == 204


def test_ids_are_never_reused_after_a_delete(ctl: ControllerProcess, node_id: str, server: dict,
                                            pool: dict) -> None:
    api = ctl.api

    def made(path: str, body: dict) -> int:
        r = api.post(path, json=body)
        assert r.status_code == 201, r.text
        return r.json()["id"]

    for path, body, delete in [
        ("/api/v1/wireguard/servers", {"node_id": node_id, "name": "re", "interface": "wgv2", "listen_port": 51842,
                                       "ipv4_address": "10.42.0.1/24"}, "/api/v1/wireguard/servers/"),
        ("/api/v1/wireguard/clients", {"server_id": server["id"], "name": "re"}, "/api/v1/wireguard/clients/"),
        ("/api/v1/ipv6/pools", {"name": "re", "prefix": "2001:db8:42::/48"}, "/api/v1/ipv6/pools/"),
        ("/api/v1/ipv6/allocations", {"pool_id": pool["id"]}, "/api/v1/ipv6/allocations/"),
    ]:
        first = made(path, body)  # the newest row: the id SQLite would hand out again without AUTOINCREMENT
        assert api.delete(f"{delete}{first}").status_code == 204
        second = made(path, body)
        assert second > first, (path, first, second)
        assert api.delete(f"{delete}{second}").status_code == 204
        # the audit log keeps the two apart: each id of the resource was created once
        for rid in (first, second):
            ops = api.get("/api/v1/operations", params={"target_id": str(rid), "size": 500}).json()["items"]
            mine = [o["action"].split()[0] for o in ops if o["action"].split()[1] in (path, f"{path}/{{id}}")]
            assert sorted(mine) == ["DELETE", "POST"], (path, rid, ops)


def test_the_contract_is_published(ctl: ControllerProcess) -> None:
    spec = ctl.api.get("/openapi.json").json()
    paths = spec["paths"]
    op = paths["/api/v1/wireguard/servers/{id}"]["put"]
    assert op["requestBody"]["required"] is True
    assert "$ref" in op["responses"]["200"]["content"]["application/json"]["schema"]
    assert {"404", "409", "422"} <= set(op["responses"])
    assert paths["/api/v1/wireguard/servers/{id}"]["get"]["parameters"][0]["schema"]["maximum"] == 2**63 - 1
    body = spec["components"]["schemas"]["ClientBody"]["properties"]["server_id"]
    assert (body["minimum"], body["maximum"]) == (1, 2**63 - 1)
    update = spec["components"]["schemas"]["ServerUpdate"]["properties"]
    assert "default" not in update["name"] and update["name"]["type"] == "string"  # optional, never null
    conf = paths["/api/v1/wireguard/clients/{id}/config"]["get"]["responses"]["200"]["content"]
    assert "text/plain" in conf
    assert "204" in paths["/api/v1/ipv6/allocations/{id}"]["delete"]["responses"]
