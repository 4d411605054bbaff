"""A small, realistic fleet put into a running controller through its API, for the walks over every screen
and for the screenshots: two real local nodes (one running, one stopped that carries a WireGuard server and a
peer), subscribers in each state (two owned by a `user` account, one blocked, one expired, one with a data
limit so byte sizes show), an account of each role and an API key.

The stopped node holds the WireGuard server on purpose: a running local node's agent would bring the
interface up on this machine, and nothing here needs real tunnels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from tests.controller_process import ControllerProcess, wait_for

#: every seeded account's password (accounts made by the admin need no change at first sign-in)
PASSWORD = "Correct-horse-battery-9"
#: 1.5 GiB: a byte size every locale writes differently ("1.5 GB", "1,5 ГБ", "1.5 GB" in zh)
LIMIT_GB = 1.5


@dataclass(frozen=True)
class Account:
    id: int
    username: str
    role: str
    password: str = PASSWORD


@dataclass(frozen=True)
class Fleet:
    """What the seed made: the ids a walk opens detail screens with."""

    running_node: str
    stopped_node: str
    #: username -> subscriber as the API answered it (id, short_uuid, subscription_url, ...)
    subscribers: dict[str, dict[str, Any]]
    wireguard_server: int
    wireguard_peer: int
    #: role -> account
    accounts: dict[str, Account]
    api_key_id: int

    @property
    def user(self) -> Account:
        return self.accounts["user"]

    @property
    def limited(self) -> dict[str, Any]:
        """The subscriber with a data limit (its screen shows a byte size)."""
        return self.subscribers["alice"]


def _ok(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, f"{r.request.method} {r.request.url.path} -> {r.status_code}: {r.text}"
    body: dict[str, Any] = r.json()
    return body


def seed(ctl: ControllerProcess) -> Fleet:
    api = ctl.api
    # both nodes boot at once; the second is stopped once it has enrolled (a node that never ran is pending)
    running = ctl.create_node(name="tokyo-1")["id"]
    stopped = ctl.create_node(name="tokyo-2")["id"]
    ctl.wait_running(running)
    ctl.wait_running(stopped)
    _ok(api.post(f"/api/v1/nodes/{stopped}/stop"), 202)
    wait_for(lambda: ctl.node(stopped)["status"] == "stopped", 30, message=f"node {stopped} stopped")

    accounts: dict[str, Account] = {}
    admin = _ok(api.get("/api/v1/auth/me"), 200)
    accounts["admin"] = Account(admin["id"], admin["username"], "admin", ctl.admin_password())
    for role, name in (("manager", "mila"), ("viewer", "victor"), ("user", "ursula")):
        made = _ok(api.post("/api/v1/users", json={"username": name, "password": PASSWORD, "role": role,
                                                   "email": f"{name}@example.com", "full_name": name.title()}), 201)
        accounts[role] = Account(made["id"], name, role)
    owner = accounts["user"].id

    subscribers: dict[str, dict[str, Any]] = {}
    for body in ({"username": "alice", "days": 30, "data_limit_gb": LIMIT_GB, "owner_id": owner,
                  "note": "family plan"},
                 {"username": "bob", "days": 90, "owner_id": owner},
                 {"username": "carol", "days": 365, "data_limit_gb": 100.0},
                 {"username": "dave", "expires_at": "2024-01-01T00:00:00+00:00"}):
        made = _ok(api.post("/api/v1/clients", json=body), 201)
        subscribers[made["username"]] = made
    _ok(api.post(f"/api/v1/clients/{subscribers['bob']['id']}/block"), 200)
    subscribers["bob"] = _ok(api.get(f"/api/v1/clients/{subscribers['bob']['id']}"), 200)

    server = _ok(api.post("/api/v1/wireguard/servers", json={
        "node_id": stopped, "name": "office", "interface": "wg0", "listen_port": 51820,
        "ipv4_address": "10.8.0.1/24", "ipv6_address": "fd00:8::1/64", "dns_servers": ["1.1.1.1"],
        "description": "staff laptops"}), 201)
    peer = _ok(api.post("/api/v1/wireguard/clients", json={"server_id": server["id"], "name": "laptop-anna"}), 201)

    key = _ok(api.post("/api/v1/auth/api-keys", json={"name": "ci-deploy", "access_level": "read",
                                                      "description": "read-only key for the CI"}), 201)
    return Fleet(running, stopped, subscribers, server["id"], peer["id"], accounts, key["id"])
