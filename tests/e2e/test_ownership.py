"""A `user` account end to end: it signs in with its password, reads its own subscription and usage through the
same routes operators use, and reaches nothing else: another subscriber's id is a 404 (not a 403, which would
say it exists), nodes, the operations log and every change are refused."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.controller_process import ControllerProcess

PASSWORD = "Correct-Horse-Battery-9"


@pytest.fixture(scope="module")
def ctl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProcess]:
    c = ControllerProcess(tmp_path_factory.mktemp("ownership") / "data")
    try:
        yield c.start()
    finally:
        c.cleanup()


def signed_in(ctl: ControllerProcess, username: str, password: str) -> httpx.Client:
    r = ctl.http_client(timeout=20).post("/api/v1/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return ctl.http_client(timeout=20, headers={"Authorization": f"Bearer {r.json()['access_token']}"})


def test_a_user_sees_only_what_it_owns(ctl: ControllerProcess) -> None:
    admin = ctl.api
    made = admin.post("/api/v1/users", json={"username": "carol", "email": "carol@example.test",
                                             "password": PASSWORD, "role": "user"})
    assert made.status_code == 201, made.text
    carol_id = made.json()["id"]
    mine = admin.post("/api/v1/clients", json={"username": "carol-phone", "days": 30, "owner_id": carol_id})
    other = admin.post("/api/v1/clients", json={"username": "dave-laptop", "days": 30})
    assert mine.status_code == other.status_code == 201, (mine.text, other.text)
    mine_id, other_id = mine.json()["id"], other.json()["id"]
    assert mine.json()["owner_id"] == carol_id and other.json()["owner_id"] is None
    # an owner that is no account is a 422 naming the field, and nothing is made
    bad = admin.post("/api/v1/clients", json={"username": "nobody-s", "days": 30, "owner_id": 999999})
    assert bad.status_code == 422 and "owner_id" in bad.json()["error"]["details"]
    node = admin.post("/api/v1/nodes", json={"region": "local", "name": "n-owner-test"}).json()
    server = admin.post("/api/v1/wireguard/servers", json={
        "node_id": node["id"], "name": "own", "interface": "wgo0", "listen_port": 51850,
        "ipv4_address": "10.50.0.1/24"}).json()
    my_peer = admin.post("/api/v1/wireguard/clients", json={"server_id": server["id"], "name": "carol-wg",
                                                            "owner_id": carol_id}).json()
    other_peer = admin.post("/api/v1/wireguard/clients", json={"server_id": server["id"], "name": "dave-wg"}).json()
    assert my_peer["owner_id"] == carol_id and other_peer["owner_id"] is None

    with signed_in(ctl, "carol", PASSWORD) as carol:
        me = carol.get("/api/v1/auth/me").json()
        assert me["username"] == "carol" and me["role"] == "user"
        # the list routes answer with what carol owns, and only that
        listed = carol.get("/api/v1/clients").json()
        assert [c["id"] for c in listed["items"]] == [mine_id] and listed["total"] == 1
        assert carol.get("/api/v1/clients", params={"owner_id": 1}).json()["total"] == 0
        assert carol.get("/api/v1/clients", params={"search": "dave"}).json()["total"] == 0
        # her own subscription, config and usage
        assert carol.get(f"/api/v1/clients/{mine_id}").json()["username"] == "carol-phone"
        config = carol.get(f"/api/v1/clients/{mine_id}/config")
        assert config.status_code == 200 and config.json()["short_uuid"] == mine.json()["short_uuid"]
        usage = carol.get(f"/api/v1/clients/{mine_id}/usage")
        assert usage.status_code == 200, usage.text
        # another subscriber is unknown to her, whichever route asks, and so is a made-up id
        for path in (f"/api/v1/clients/{other_id}", f"/api/v1/clients/{other_id}/config",
                     f"/api/v1/clients/{other_id}/usage", f"/api/v1/clients/{uuid.uuid4()}"):
            r = carol.get(path)
            assert r.status_code == 404 and r.json()["error"]["code"] == "RESOURCE_NOT_FOUND", (path, r.text)
        # her WireGuard peer with its config and QR code, and not anyone else's
        peers = carol.get("/api/v1/wireguard/clients").json()
        assert [p["id"] for p in peers["items"]] == [my_peer["id"]]
        peer = carol.get(f"/api/v1/wireguard/clients/{my_peer['id']}").json()
        assert peer["config"].startswith("[Interface]") and peer["qr_code"].startswith("data:image/png;base64,")
        conf = carol.get(f"/api/v1/wireguard/clients/{my_peer['id']}/config")
        assert conf.status_code == 200 and "PrivateKey" in conf.text
        for path in (f"/api/v1/wireguard/clients/{other_peer['id']}",
                     f"/api/v1/wireguard/clients/{other_peer['id']}/config"):
            assert carol.get(path).status_code == 404, path
        # the fleet, the audit log and every change are not hers
        for method, path in (("GET", "/api/v1/nodes"), ("GET", "/api/v1/operations"), ("GET", "/api/v1/users"),
                             ("GET", "/api/v1/events"), ("GET", "/api/v1/wireguard/servers"),
                             ("PUT", f"/api/v1/wireguard/clients/{my_peer['id']}"),
                             ("PATCH", f"/api/v1/clients/{mine_id}"), ("POST", f"/api/v1/clients/{mine_id}/block"),
                             ("DELETE", f"/api/v1/clients/{mine_id}"), ("POST", "/api/v1/clients")):
            r = carol.request(method, path, json={} if method in ("POST", "PATCH", "PUT") else None)
            assert r.status_code == 403 and r.json()["error"]["code"] == "INSUFFICIENT_PERMISSIONS", (path, r.text)
        # she cannot make herself more than she is
        r = carol.patch(f"/api/v1/users/{carol_id}", json={"role": "admin"})
        assert r.status_code == 403, r.text
    # nothing she tried changed anything
    assert admin.get(f"/api/v1/users/{carol_id}").json()["role"] == "user"
    assert admin.get(f"/api/v1/clients/{mine_id}").json()["status"] == "active"
    assert admin.get("/api/v1/clients").json()["total"] == 2
    # operators see her attempts in the operations log, under her name
    ops = admin.get("/api/v1/operations", params={"actor": "carol"}).json()["items"]
    tried = [o for o in ops if o["action"] != "auth.login"]
    assert tried and all(o["result"] == "fail" and o["status_code"] == 403 for o in tried)
    assert [o["result"] for o in ops if o["action"] == "auth.login"] == ["success"]


def test_not_found_says_nothing_about_other_owners(ctl: ControllerProcess) -> None:
    """The 404 for someone else's subscriber reads exactly like the one for an id nobody has."""
    admin = ctl.api
    erin = admin.post("/api/v1/users", json={"username": "erin", "password": PASSWORD, "role": "user"})
    assert erin.status_code == 201, erin.text
    theirs = admin.post("/api/v1/clients", json={"username": "frank-tab", "days": 30}).json()["id"]
    nobody = str(uuid.uuid4())
    with signed_in(ctl, "erin", PASSWORD) as e:
        a, b = e.get(f"/api/v1/clients/{theirs}").json()["error"], e.get(f"/api/v1/clients/{nobody}").json()["error"]
    assert a["message"].replace(theirs, "ID") == b["message"].replace(nobody, "ID")
    assert a.keys() == b.keys()
