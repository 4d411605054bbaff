"""Accounts (/api/v1/users) against a real controller: create, list, filter, sort, change, delete, reset a
password; every escalation attempt refused with nothing changed; suspension and deletion effective on the next
request."""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from controller.auth import Principal
from controller.db import make_engine, make_sessionmaker, prepare_database
from controller.errors import Conflict
from controller.models import Account
from controller.permissions import ALL, Role
from controller.schemas.users import AccountOut, AccountUpdate
from tests.controller_process import ControllerProcess

PASSWORD = "Correct-horse-battery-9"


@pytest.fixture(scope="module")
def ctl(shared_controller: ControllerProcess) -> ControllerProcess:
    return shared_controller


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_account(ctl: ControllerProcess, role: str, **body: Any) -> dict[str, Any]:
    name = body.pop("username", None) or unique(role)
    r = ctl.api.post("/api/v1/users", json={"username": name, "password": PASSWORD, "role": role, **body})
    assert r.status_code == 201, r.text
    return r.json()


def key_of(ctl: ControllerProcess, account_id: int, **scopes: Any) -> str:
    """A full key for the account, made by the admin (keys.manage_all)."""
    body = {"name": unique("key"), "access_level": "full", "account_id": account_id, **scopes}
    r = ctl.api.post("/api/v1/auth/api-keys", json=body)
    assert r.status_code == 201, r.text
    return r.json()["api_key"]


def as_key(ctl: ControllerProcess, key: str) -> httpx.Client:
    return ctl.http_client(headers={"X-API-Key": key}, timeout=20)


def account_row(ctl: ControllerProcess, account_id: int) -> dict[str, Any] | None:
    with sqlite3.connect(ctl.data_dir / "vpnfleet.db") as db:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM accounts WHERE id = ?", (account_id,)).fetchone()
        return dict(row) if row else None


def test_create_get_list_filter_sort(ctl: ControllerProcess) -> None:
    tag = uuid.uuid4().hex[:6]
    made = [make_account(ctl, "manager", username=f"zed-{tag}", email=f"zed-{tag}@example.com", full_name="Zed"),
            make_account(ctl, "viewer", username=f"amy-{tag}", email=f"amy-{tag}@example.org"),
            make_account(ctl, "user", username=f"mo-{tag}", status="inactive")]
    assert set(made[0]) == set(AccountOut.model_fields)
    assert made[0]["permissions"] == sorted(made[0]["permissions"]) and "nodes.edit" in made[0]["permissions"]
    assert "users.manage" not in made[0]["permissions"] and made[0]["two_factor_enabled"] is False
    row = account_row(ctl, made[0]["id"])
    assert row and row["password_hash"].startswith("$argon2id$") and PASSWORD not in str(row)

    assert ctl.api.get(f"/api/v1/users/{made[1]['id']}").json() == made[1]
    admin = ctl.api.get("/api/v1/users", params={"search": "admin", "role": "admin"}).json()["items"]
    assert admin[0]["username"] == "admin" and admin[0]["permissions"] == ["*"]

    page = ctl.api.get("/api/v1/users", params={"search": tag.upper(), "sort": "username"}).json()
    assert [a["username"] for a in page["items"]] == [f"amy-{tag}", f"mo-{tag}", f"zed-{tag}"]
    assert page["total"] == 3 and page["pages"] == 1
    desc = ctl.api.get("/api/v1/users", params={"search": tag, "sort": "username", "order": "desc"}).json()
    assert [a["username"] for a in desc["items"]] == [f"zed-{tag}", f"mo-{tag}", f"amy-{tag}"]
    # by email: the account without one sorts last either way
    by_email = ctl.api.get("/api/v1/users", params={"search": tag, "sort": "email", "order": "desc"}).json()
    assert [a["username"] for a in by_email["items"]] == [f"zed-{tag}", f"amy-{tag}", f"mo-{tag}"]
    assert [a["username"] for a in ctl.api.get("/api/v1/users", params={"search": "example.org"}).json()["items"]
            if tag in a["username"]] == [f"amy-{tag}"]
    inactive = ctl.api.get("/api/v1/users", params={"search": tag, "status": "inactive"}).json()["items"]
    assert [a["username"] for a in inactive] == [f"mo-{tag}"]
    viewers = ctl.api.get("/api/v1/users", params={"search": tag, "role": "viewer"}).json()["items"]
    assert [a["username"] for a in viewers] == [f"amy-{tag}"]
    paged = ctl.api.get("/api/v1/users", params={"search": tag, "size": 2, "page": 2}).json()
    assert len(paged["items"]) == 1 and paged["pages"] == 2
    assert ctl.api.get("/api/v1/users", params={"sort": "password_hash"}).status_code == 422


def test_bad_input_names_the_field_and_changes_nothing(ctl: ControllerProcess) -> None:
    name = unique("dup")
    make_account(ctl, "viewer", username=name, email=f"{name}@example.com")
    for body, status, field in [
        ({"username": name.upper()}, 409, "username"),  # unique regardless of case
        ({"username": unique("x"), "email": f"{name.upper()}@EXAMPLE.com"}, 409, "email"),
        ({"username": unique("x"), "password": "short"}, 422, "password"),
        ({"username": unique("x"), "permissions": ["nodes.fly"]}, 422, "permissions"),
        ({"username": unique("x"), "permissions": ["nodes.edit"]}, 422, "permissions"),  # beyond a viewer
        ({"username": unique("x"), "two_factor_enabled": True}, 422, "two_factor_enabled"),
        ({"username": "a b"}, 422, "username"),
        ({"username": unique("x"), "role": "root"}, 422, "role"),
    ]:
        r = ctl.api.post("/api/v1/users", json={"password": PASSWORD, "role": "viewer", **body})
        assert r.status_code == status, (body, r.text)
        details = r.json()["error"].get("details") or {}
        assert any(field in k for k in details) or field in r.json()["error"]["message"], (body, r.text)
    assert "never widened" in ctl.api.post("/api/v1/users", json={
        "username": unique("x"), "password": PASSWORD, "role": "viewer",
        "permissions": ["nodes.edit"]}).json()["error"]["message"]
    found = ctl.api.get("/api/v1/users", params={"search": name}).json()["items"]
    assert len(found) == 1


def test_update_put_patch_narrow_and_role_change(ctl: ControllerProcess) -> None:
    a = make_account(ctl, "manager", email=f"{unique('m')}@example.com")
    r = ctl.api.put(f"/api/v1/users/{a['id']}", json={"full_name": "Mia Manager",
                                                       "permissions": ["nodes.view", "subscribers.view"]})
    assert r.status_code == 200, r.text
    assert r.json()["full_name"] == "Mia Manager" and r.json()["permissions"] == ["nodes.view", "subscribers.view"]
    assert r.json()["email"] == a["email"]  # only what was given changes
    r = ctl.api.patch(f"/api/v1/users/{a['id']}", json={"role": "viewer"})
    assert r.status_code == 200 and r.json()["role"] == "viewer"
    assert "nodes.edit" not in r.json()["permissions"] and "nodes.view" in r.json()["permissions"]
    assert ctl.api.put(f"/api/v1/users/{a['id']}", json={"role": None}).status_code == 422
    assert ctl.api.put(f"/api/v1/users/{a['id']}", json={"permissions": ["users.manage"]}).status_code == 422
    assert ctl.api.put("/api/v1/users/999999", json={"full_name": "x"}).status_code == 404


def test_manager_and_viewer_and_user_cannot_manage_accounts(ctl: ControllerProcess) -> None:
    manager = make_account(ctl, "manager")
    viewer = make_account(ctl, "viewer")
    user = make_account(ctl, "user")
    target = make_account(ctl, "viewer")
    for account in (manager, viewer, user):
        with as_key(ctl, key_of(ctl, account["id"])) as c:
            r = c.get("/api/v1/users")
            assert r.status_code == 403 and r.json()["error"]["details"]["required"] == "users.view"
            r = c.post("/api/v1/users", json={"username": unique("evil"), "password": PASSWORD, "role": "admin"})
            assert r.status_code == 403 and r.json()["error"]["code"] == "INSUFFICIENT_PERMISSIONS"
            # not even their own role
            for method in ("PUT", "PATCH"):
                r = c.request(method, f"/api/v1/users/{account['id']}", json={"role": "admin"})
                assert r.status_code == 403 and r.json()["error"]["details"]["required"] == "users.manage"
            assert c.delete(f"/api/v1/users/{target['id']}").status_code == 403
            assert c.post(f"/api/v1/users/{target['id']}/reset-password",
                          json={"new_password": PASSWORD + "x"}).status_code == 403
    for account in (manager, viewer, user, target):
        assert ctl.api.get(f"/api/v1/users/{account['id']}").json() == account  # nothing changed
    assert not ctl.api.get("/api/v1/users", params={"search": "evil", "role": "admin"}).json()["items"]


def test_nobody_changes_their_own_role_status_or_permissions(ctl: ControllerProcess) -> None:
    other_admin = make_account(ctl, "admin")
    with as_key(ctl, key_of(ctl, other_admin["id"])) as c:
        for change in ({"role": "viewer"}, {"status": "suspended"}, {"permissions": ["nodes.view"]}):
            r = c.put(f"/api/v1/users/{other_admin['id']}", json=change)
            assert r.status_code == 403, (change, r.text)
            assert r.json()["error"]["code"] == "INSUFFICIENT_PERMISSIONS"
        assert c.delete(f"/api/v1/users/{other_admin['id']}").status_code == 403
        # unchanged values and other fields are fine
        r = c.put(f"/api/v1/users/{other_admin['id']}", json={"role": "admin", "full_name": "Second Admin"})
        assert r.status_code == 200 and r.json()["full_name"] == "Second Admin"
    after = ctl.api.get(f"/api/v1/users/{other_admin['id']}").json()
    assert after["role"] == "admin" and after["status"] == "active" and after["permissions"] == ["*"]
    # the original admin demoting itself with the old admin key: refused too
    me = ctl.api.get("/api/v1/users", params={"search": "admin", "role": "admin", "sort": "created_at"}).json()
    first = me["items"][0]
    assert ctl.api.patch(f"/api/v1/users/{first['id']}", json={"role": "manager"}).status_code == 403


def test_suspend_stops_keys_at_once_and_delete_keeps_owned_things(ctl: ControllerProcess) -> None:
    account = make_account(ctl, "manager")
    key = key_of(ctl, account["id"])
    with as_key(ctl, key) as c:
        assert c.get("/api/v1/nodes").status_code == 200
        assert ctl.api.put(f"/api/v1/users/{account['id']}", json={"status": "suspended"}).status_code == 200
        r = c.get("/api/v1/nodes")
        assert r.status_code == 401 and "suspended" in r.json()["error"]["message"]
        assert ctl.api.put(f"/api/v1/users/{account['id']}", json={"status": "active"}).status_code == 200
        assert c.get("/api/v1/nodes").status_code == 200
        sub = ctl.api.post("/api/v1/clients", json={"username": unique("sub"), "days": 3,
                                                     "owner_id": account["id"]})
        assert sub.status_code == 201, sub.text
        assert ctl.api.delete(f"/api/v1/users/{account['id']}").status_code == 204
        assert c.get("/api/v1/nodes").status_code == 401
    assert ctl.api.get(f"/api/v1/users/{account['id']}").status_code == 404
    kept = ctl.api.get(f"/api/v1/clients/{sub.json()['id']}")
    assert kept.status_code == 200 and kept.json()["owner_id"] is None
    keys = ctl.api.get("/api/v1/auth/api-keys", params={"account_id": account["id"]}).json()
    assert keys["items"] == []  # its keys went with it
    assert ctl.api.delete(f"/api/v1/users/{account['id']}").status_code == 404


def test_reset_password(ctl: ControllerProcess) -> None:
    account = make_account(ctl, "viewer")
    r = ctl.api.post(f"/api/v1/users/{account['id']}/reset-password", json={"new_password": "tooshort"})
    assert r.status_code == 422 and "new_password" in r.json()["error"]["details"]
    before = account_row(ctl, account["id"])
    assert before is not None
    r = ctl.api.post(f"/api/v1/users/{account['id']}/reset-password",
                     json={"new_password": "Another-long-pass-7", "force_change": True, "send_email": True})
    assert r.status_code == 200, r.text
    assert r.json()["must_change_password"] is True
    after = account_row(ctl, account["id"])
    assert after and after["password_hash"] != before["password_hash"] and after["must_change_password"] == 1
    login = httpx.post(ctl.url + "/api/v1/auth/login", json={"username": account["username"],
                                                             "password": "Another-long-pass-7"},
                       verify=ctl.verify(), timeout=20)
    assert login.status_code == 200, login.text
    assert login.json()["user"]["must_change_password"] is True
    # until the account sets its own password, its sign-in reaches nothing else
    with ctl.http_client(timeout=20, headers={"Authorization": f"Bearer {login.json()['access_token']}"}) as c:
        r = c.get("/api/v1/nodes")
        assert r.status_code == 403 and r.json()["error"]["details"] == {"required": "password change"}
        assert c.get("/api/v1/auth/me").status_code == 200
        assert c.put("/api/v1/auth/password", json={"current_password": "Another-long-pass-7",
                                                    "new_password": "My-own-long-pass-8"}).status_code == 204
        assert c.get("/api/v1/nodes").status_code == 200  # the same sign-in, now free


async def test_the_last_active_admin_stays(tmp_path: Path) -> None:
    """Through the API only oneself could be the last admin (and that is refused as a self-change), so the
    409 guards races and callers from outside (a key whose account is not the target): checked on the service
    over a real database."""
    from controller.services.accounts import AccountService
    from controller.settings import Settings
    from controller.passwords import Passwords

    class NoDirectory:
        async def refresh_account(self, account_id: int) -> None: ...
        def revoke_session(self, sid: str) -> None: ...

    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    await prepare_database(engine)
    sessions = make_sessionmaker(engine)
    now = dt.datetime.now(dt.timezone.utc)
    async with sessions() as s:
        admin = Account(username="only", username_lower="only", full_name="", role="admin", status="active",
                        created_at=now, updated_at=now)
        s.add(admin)
        await s.commit()
    svc = AccountService(Settings(data_dir=tmp_path), sessions, Passwords(1, 8192), NoDirectory())  # type: ignore[arg-type]
    outsider = Principal(account_id=999, username="outsider", role=Role.ADMIN, permissions=ALL)
    for edit in (AccountUpdate(role="manager"), AccountUpdate(status="suspended")):
        with pytest.raises(Conflict):
            await svc.update(admin.id, edit, outsider)
    with pytest.raises(Conflict):
        await svc.delete(admin.id, outsider)
    async with sessions() as s:
        row = await s.get(Account, admin.id)
        assert row is not None and row.role == "admin" and row.status == "active"
    await engine.dispose()
