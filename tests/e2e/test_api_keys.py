"""Scoped API keys (/api/v1/auth/api-keys) against a real controller: shown once and stored hashed; addresses,
path globs, expiry and access level enforced on real requests; revoke and rotate effective on the next request;
no key ever stronger than its account or its maker; the old admin key still working."""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
import time
import uuid
from typing import Any

import httpx
import pytest

from controller.schemas.api_keys import ApiKeyCreated, ApiKeyOut
from tests.controller_process import ControllerProcess

PASSWORD = "Correct-horse-battery-9"


@pytest.fixture(scope="module")
def ctl(shared_controller: ControllerProcess) -> ControllerProcess:
    return shared_controller


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create(client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post("/api/v1/auth/api-keys", json={"name": unique("k"), **body})


def made(client: httpx.Client, **body: Any) -> dict[str, Any]:
    r = create(client, **body)
    assert r.status_code == 201, r.text
    return r.json()


def as_key(ctl: ControllerProcess, key: str) -> httpx.Client:
    return ctl.http_client(headers={"X-API-Key": key}, timeout=20)


def account(ctl: ControllerProcess, role: str) -> dict[str, Any]:
    r = ctl.api.post("/api/v1/users", json={"username": unique(role), "password": PASSWORD, "role": role})
    assert r.status_code == 201, r.text
    return r.json()


def test_key_is_shown_once_and_stored_hashed(ctl: ControllerProcess) -> None:
    k = made(ctl.api, access_level="read", permissions=["wireguard.view", "nodes.view"],
             allowed_endpoints=["/api/v1/wireguard/*"], rate_limit={"requests_per_minute": 1000, "burst_limit": 2000},
             expires_at="2099-12-31T23:59:59Z", description="monitoring")
    assert set(k) == set(ApiKeyCreated.model_fields)
    assert k["api_key"].startswith("vpf_") and k["prefix"] == k["api_key"][:12] and k["status"] == "active"
    assert k["effective_permissions"] == ["nodes.view", "wireguard.view"] and k["last_used"] is None
    assert k["rate_limit"] == {"requests_per_minute": 1000, "burst_limit": 2000}
    shown = ctl.api.get(f"/api/v1/auth/api-keys/{k['id']}").json()
    assert set(shown) == set(ApiKeyOut.model_fields) and "api_key" not in shown
    assert {x["id"] for x in ctl.api.get("/api/v1/auth/api-keys").json()["items"]} >= {1, k["id"]}
    with sqlite3.connect(ctl.data_dir / "vpnfleet.db") as db:
        stored = db.execute("SELECT key_hash FROM api_keys WHERE id = ?", (k["id"],)).fetchone()[0]
    assert stored == hashlib.sha256(k["api_key"].encode()).hexdigest()
    assert k["api_key"] not in ctl.log()
    ops = ctl.api.get("/api/v1/operations", params={"size": 50}).json()["items"]
    assert k["api_key"] not in str(ops)
    # names are unique
    r = create(ctl.api, name=k["name"])
    assert r.status_code == 409 and r.json()["error"]["details"] == {"name": "already taken"}


@pytest.mark.parametrize("body,field", [
    ({"allowed_ips": ["10.0.0.300/8"]}, "allowed_ips"),
    ({"allowed_endpoints": ["api/v1/nodes"]}, "allowed_endpoints"),
    ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
    ({"expires_at": "2099-01-01T00:00:00"}, "expires_at"),  # no offset
    ({"permissions": ["nodes.fly"]}, "permissions"),
    ({"access_level": "root"}, "access_level"),
    ({"rate_limit": {"requests_per_minute": 0}}, "rate_limit"),
])
def test_bad_scopes_are_422_naming_the_field(ctl: ControllerProcess, body: dict, field: str) -> None:
    r = create(ctl.api, **body)
    assert r.status_code == 422, r.text
    assert any(field in k for k in r.json()["error"]["details"]), r.text


def test_allowed_ips(ctl: ControllerProcess) -> None:
    elsewhere = made(ctl.api, allowed_ips=["10.0.0.0/8"])
    here = made(ctl.api, allowed_ips=["127.0.0.0/8", "2001:db8::/32"])
    with as_key(ctl, elsewhere["api_key"]) as c:
        r = c.get("/api/v1/nodes")
        assert r.status_code == 403 and r.json()["error"]["code"] == "INSUFFICIENT_PERMISSIONS"
    # a real key refused is recorded under its name (the audit middleware sees only admitted requests)
    entry = next(o for o in ctl.api.get("/api/v1/operations", params={"actor": f"admin (key {elsewhere['name']})"})
                 .json()["items"] if o["request_id"] == r.headers["x-request-id"])
    assert entry["status_code"] == 403 and entry["result"] == "fail" and "address" in entry["error"]
    with as_key(ctl, here["api_key"]) as c:
        assert c.get("/api/v1/nodes").status_code == 200


def test_allowed_endpoints(ctl: ControllerProcess) -> None:
    k = made(ctl.api, access_level="full", allowed_endpoints=["/api/v1/wireguard/*"])
    with as_key(ctl, k["api_key"]) as c:
        assert c.get("/api/v1/wireguard/servers").status_code == 200
        r = c.get("/api/v1/nodes")
        assert r.status_code == 403 and r.json()["error"]["details"] == {"path": "/api/v1/nodes"}


def test_expiry(ctl: ControllerProcess) -> None:
    at = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=3)
    k = made(ctl.api, expires_at=at.isoformat())
    with as_key(ctl, k["api_key"]) as c:
        assert c.get("/api/v1/nodes").status_code == 200
        time.sleep(max(0.0, (at - dt.datetime.now(dt.timezone.utc)).total_seconds()) + 0.5)
        r = c.get("/api/v1/nodes")
        assert r.status_code == 401 and "expired" in r.json()["error"]["message"]
    assert ctl.api.get(f"/api/v1/auth/api-keys/{k['id']}").json()["status"] == "expired"
    assert ctl.api.post(f"/api/v1/auth/api-keys/{k['id']}/rotate").status_code == 409


def test_read_access_level(ctl: ControllerProcess) -> None:
    k = made(ctl.api, access_level="read")
    with as_key(ctl, k["api_key"]) as c:
        assert c.get("/api/v1/nodes").status_code == 200
        r = c.post("/api/v1/clients", json={"username": unique("sub"), "days": 1})
        assert r.status_code == 403 and r.json()["error"]["details"]["required"] == "subscribers.edit"
    assert "subscribers.edit" not in k["effective_permissions"]


def test_revoke_and_rotate_take_effect_on_the_next_request(ctl: ControllerProcess) -> None:
    k = made(ctl.api, access_level="read", allowed_endpoints=["/api/v1/nodes*"])
    with as_key(ctl, k["api_key"]) as c:
        assert c.get("/api/v1/nodes").status_code == 200
        r = ctl.api.post(f"/api/v1/auth/api-keys/{k['id']}/rotate")
        assert r.status_code == 200, r.text
        new = r.json()
        assert c.get("/api/v1/nodes").status_code == 401  # the old secret, at once
    assert new["api_key"] != k["api_key"] and new["prefix"] == new["api_key"][:12] and new["id"] == k["id"]
    assert (new["allowed_endpoints"], new["access_level"]) == (k["allowed_endpoints"], "read")
    with as_key(ctl, new["api_key"]) as c:
        assert c.get("/api/v1/nodes").status_code == 200
        assert c.get("/api/v1/regions").status_code == 403  # same scopes
        assert ctl.api.delete(f"/api/v1/auth/api-keys/{k['id']}").status_code == 204
        assert c.get("/api/v1/nodes").status_code == 401
    assert ctl.api.delete(f"/api/v1/auth/api-keys/{k['id']}").status_code == 204  # idempotent
    shown = ctl.api.get(f"/api/v1/auth/api-keys/{k['id']}").json()
    assert shown["status"] == "revoked" and shown["revoked_at"] and shown["last_used"]
    assert ctl.api.post(f"/api/v1/auth/api-keys/{k['id']}/rotate").status_code == 409
    revoked = ctl.api.get("/api/v1/auth/api-keys", params={"status": "revoked"}).json()["items"]
    assert k["id"] in [x["id"] for x in revoked]


def test_a_key_never_mints_a_stronger_key(ctl: ControllerProcess) -> None:
    narrow = made(ctl.api, access_level="write", permissions=["keys.manage", "nodes.view"],
                  allowed_ips=["127.0.0.0/8"], expires_at="2099-01-01T00:00:00Z")
    before = {x["id"] for x in ctl.api.get("/api/v1/auth/api-keys", params={"size": 500}).json()["items"]}
    with as_key(ctl, narrow["api_key"]) as c:
        r = create(c, permissions=["nodes.edit"], access_level="full")
        assert r.status_code == 403 and r.json()["error"]["details"]["required"] == "nodes.edit"
        assert "nodes.edit" in r.json()["error"]["message"]
        assert create(c, permissions=["*"]).status_code == 403
        assert create(c, permissions=["nodes.view"], allowed_ips=["0.0.0.0/0"]).status_code == 403
        assert create(c, permissions=["nodes.view"], expires_at="2099-06-01T00:00:00Z").status_code == 403
        # rotating the admin key would hand this key the admin's secret
        assert c.post("/api/v1/auth/api-keys/1/rotate").status_code == 403
        assert c.delete("/api/v1/auth/api-keys/1").status_code == 403
        after = {x["id"] for x in ctl.api.get("/api/v1/auth/api-keys", params={"size": 500}).json()["items"]}
        assert after == before  # nothing made
        # with no scopes given, the new key is exactly as narrow as its maker
        child = made(c, access_level="full")
        assert child["effective_permissions"] == ["keys.manage", "nodes.view"]
        assert child["allowed_ips"] == ["127.0.0.0/8"] and child["expires_at"] == narrow["expires_at"]
        narrower = made(c, permissions=["nodes.view"], allowed_ips=["127.0.0.1/32"])
        assert narrower["effective_permissions"] == ["nodes.view"]
    with as_key(ctl, child["api_key"]) as c:
        assert c.get("/api/v1/nodes").status_code == 200
        assert c.post("/api/v1/nodes", json={"region": "local"}).status_code == 403


def test_who_may_make_keys_for_whom(ctl: ControllerProcess) -> None:
    viewer, manager, user = account(ctl, "viewer"), account(ctl, "manager"), account(ctl, "user")
    keys = {a["role"]: made(ctl.api, access_level="full", account_id=a["id"])["api_key"]
            for a in (viewer, manager, user)}
    # an admin's key for another account is within that account, not the admin
    r = create(ctl.api, account_id=viewer["id"], permissions=["nodes.edit"])
    assert r.status_code == 403 and r.json()["error"]["details"]["required"] == "nodes.edit"
    assert create(ctl.api, account_id=999999).status_code == 422
    with as_key(ctl, keys["viewer"]) as c:
        r = create(c)
        assert r.status_code == 403 and r.json()["error"]["details"]["required"] == "keys.manage"
        listed = c.get("/api/v1/auth/api-keys").json()["items"]  # its own keys: readable
        assert [x["account_id"] for x in listed] == [viewer["id"]]
    with as_key(ctl, keys["manager"]) as c:
        r = create(c, account_id=viewer["id"])
        assert r.status_code == 403 and r.json()["error"]["details"]["required"] == "keys.manage_all"
        assert c.get("/api/v1/auth/api-keys/1").status_code == 404  # the admin's: as if unknown
    with as_key(ctl, keys["user"]) as c:
        own = made(c, access_level="full")
        assert own["account_id"] == user["id"]
        assert sorted(own["effective_permissions"]) == ["keys.manage", "nodepass.view", "subscribers.view",
                                                        "wireguard.view"]
        listed = c.get("/api/v1/auth/api-keys").json()["items"]
        assert {x["account_id"] for x in listed} == {user["id"]} and len(listed) == 2
        assert c.get("/api/v1/auth/api-keys", params={"account_id": 1}).json()["items"] == []
        assert c.delete("/api/v1/auth/api-keys/1").status_code == 404
        assert c.post(f"/api/v1/auth/api-keys/{own['id']}/rotate").status_code == 200
    all_keys = ctl.api.get("/api/v1/auth/api-keys", params={"account_id": user["id"]}).json()["items"]
    assert len(all_keys) == 2


def test_the_old_admin_key_still_works_and_is_the_admin_accounts(ctl: ControllerProcess) -> None:
    with as_key(ctl, ctl.admin_key()) as c:
        assert c.get("/api/v1/nodes").status_code == 200
        k = c.get("/api/v1/auth/api-keys/1").json()
    assert k["username"] == "admin" and k["effective_permissions"] == ["*"] and k["status"] == "active"
    assert k["prefix"] == ctl.admin_key()[:12]
