"""The CLI's accounts side against a real controller: `vpnfleet keys create|ls|revoke|rotate`, `vpnfleet login`
(a 0600 session file, refreshed with a rotating refresh token when the access token expired), `vpnfleet logout`,
and `vpnfleet-controller create-admin`."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.controller_process import ControllerProcess


@pytest.fixture(scope="module")
def ctl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProcess]:
    c = ControllerProcess(tmp_path_factory.mktemp("cli-accounts") / "data")
    try:
        yield c.start()
    finally:
        c.cleanup()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """Where this test's CLI keeps its session ($XDG_CONFIG_HOME), never the real home."""
    return tmp_path / "config"


def env_for(ctl: ControllerProcess, home: Path, tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VPNFLEET_")}
    empty = tmp / "no-data-dir"  # no admin.key to fall back on: what the CLI uses must be what the test gave
    empty.mkdir(exist_ok=True)
    return {**env, "VPNFLEET_URL": ctl.url, "VPNFLEET_CA_CERT": str(ctl.ca_file), "VPNFLEET_DATA_DIR": str(empty),
            "XDG_CONFIG_HOME": str(home), "PYTHONPATH": str(Path(__file__).resolve().parents[2]), **extra}


def vpnfleet(env: dict[str, str], *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller.cli", *argv], env=env, input=stdin, text=True,
                          capture_output=True, timeout=60)


def as_json(r: subprocess.CompletedProcess[str]) -> Any:
    assert r.returncode == 0, (r.stdout, r.stderr)
    return json.loads(r.stdout)


def works(ctl: ControllerProcess, key: str, path: str = "/api/v1/nodes") -> int:
    with ctl.http_client(headers={"X-API-Key": key}, timeout=20) as c:
        return c.get(path).status_code


def test_keys_create_ls_revoke_rotate(ctl: ControllerProcess, home: Path, tmp_path: Path) -> None:
    env = env_for(ctl, home, tmp_path, VPNFLEET_API_KEY=ctl.admin_key())
    name = f"mon-{uuid.uuid4().hex[:6]}"
    made = as_json(vpnfleet(env, "keys", "create", "--name", name, "--permission", "nodes.view",
                            "--allow-ip", "127.0.0.0/8", "--endpoint", "/api/v1/nodes*", "--rate-limit", "600",
                            "--expires-at", "2099-01-01T00:00:00Z", "--json"))
    key = made["api_key"]
    assert made["access_level"] == "read" and made["effective_permissions"] == ["nodes.view"]
    assert made["allowed_ips"] == ["127.0.0.0/8"] and made["rate_limit"]["requests_per_minute"] == 600
    assert works(ctl, key) == 200 and works(ctl, key, "/api/v1/regions") == 403

    # the human form prints the key once, on its own line
    plain = vpnfleet(env, "keys", "create", "--name", name + "-2")
    assert plain.returncode == 0, plain.stderr
    shown = [line for line in plain.stdout.splitlines() if line.startswith("vpf_") and len(line) > 40]
    assert len(shown) == 1 and works(ctl, shown[0]) == 200

    listing = vpnfleet(env, "keys", "ls")
    assert listing.returncode == 0 and name in listing.stdout and made["prefix"] in listing.stdout
    assert key not in listing.stdout and "admin" in listing.stdout
    assert {k["name"] for k in as_json(vpnfleet(env, "keys", "ls", "--json"))["items"]} >= {name, name + "-2"}

    rotated = as_json(vpnfleet(env, "keys", "rotate", str(made["id"]), "--json"))
    assert rotated["api_key"] != key and works(ctl, key) == 401 and works(ctl, rotated["api_key"]) == 200
    r = vpnfleet(env, "keys", "revoke", str(made["id"]))
    assert r.returncode == 0 and "revoked" in r.stdout
    assert works(ctl, rotated["api_key"]) == 401
    assert as_json(vpnfleet(env, "keys", "ls", "--status", "revoked", "--json"))["items"][0]["id"] == made["id"]

    bad = vpnfleet(env, "keys", "create", "--name", "x", "--allow-ip", "nonsense")
    assert bad.returncode == 1 and "allowed_ips" in bad.stderr


def test_login_caches_a_private_session_refreshes_it_and_logout_ends_it(
        ctl: ControllerProcess, home: Path, tmp_path: Path) -> None:
    env = env_for(ctl, home, tmp_path)
    assert vpnfleet(env, "keys", "ls").returncode == 1  # no key, no session
    password = ctl.admin_password()
    r = vpnfleet(env, "login", "--username", "admin", "--password-stdin", stdin=password + "\n")
    assert r.returncode == 0, r.stderr
    assert password not in r.stdout + r.stderr
    path = home / "vpnfleet" / "session.json"
    assert oct(path.stat().st_mode & 0o777) == "0o600" and oct(path.parent.stat().st_mode & 0o777) == "0o700"
    saved = json.loads(path.read_text())
    assert set(saved) == {"url", "access_token", "refresh_token", "expires_at", "username"}
    assert saved["url"] == ctl.url and password not in path.read_text()
    assert [p.name for p in path.parent.iterdir()] == ["session.json"]  # no temporary file left behind

    # every command uses the session when no key is given
    assert as_json(vpnfleet(env, "keys", "ls", "--json"))["items"][0]["username"] == "admin"

    # an access token past its expiry is refreshed first; the refresh token rotates and the old one is spent
    saved["expires_at"] = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)).isoformat()
    path.write_text(json.dumps(saved))
    assert as_json(vpnfleet(env, "keys", "ls", "--json"))["total"] >= 1
    renewed = json.loads(path.read_text())
    assert renewed["refresh_token"] != saved["refresh_token"] and renewed["access_token"] != saved["access_token"]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    spent = httpx.post(ctl.url + "/api/v1/auth/refresh", json={"refresh_token": saved["refresh_token"]},
                       verify=ctl.verify(), timeout=20)
    assert spent.status_code == 401
    # presenting the spent token ended the whole family (reuse detection): the CLI says to sign in again
    r = vpnfleet(env, "keys", "ls")
    assert r.returncode == 1 and "TOKEN_INVALID" in r.stderr and "vpnfleet login" in r.stderr and not path.exists()

    # a fresh sign-in, then logout ends it on the controller too
    assert vpnfleet(env, "login", "-u", "admin", "--password-stdin", stdin=password + "\n").returncode == 0
    token = json.loads(path.read_text())["access_token"]
    r = vpnfleet(env, "logout")
    assert r.returncode == 0 and not path.exists()
    with ctl.http_client(headers={"Authorization": f"Bearer {token}"}, timeout=20) as c:
        assert c.get("/api/v1/nodes").status_code == 401
    assert vpnfleet(env, "keys", "ls").returncode == 1


def test_wrong_password_and_a_key_wins_over_the_session(ctl: ControllerProcess, home: Path, tmp_path: Path) -> None:
    env = env_for(ctl, home, tmp_path)
    r = vpnfleet(env, "login", "-u", "admin", "--password-stdin", stdin="not-the-password\n")
    assert r.returncode == 1 and "INVALID_CREDENTIALS" in r.stderr
    assert not (home / "vpnfleet" / "session.json").exists()
    assert vpnfleet(env, "login", "-u", "admin").returncode == 1  # no terminal and no --password-stdin
    assert vpnfleet(env, "login", "-u", "admin", "--password-stdin", stdin=ctl.admin_password() + "\n"
                    ).returncode == 0
    viewer = ctl.api.post("/api/v1/users", json={"username": f"v-{uuid.uuid4().hex[:6]}", "role": "viewer",
                                                 "password": "Correct-horse-battery-9"}).json()
    vkey = ctl.api.post("/api/v1/auth/api-keys", json={"name": f"vk-{uuid.uuid4().hex[:6]}", "access_level": "full",
                                                       "account_id": viewer["id"]}).json()["api_key"]
    r = vpnfleet({**env, "VPNFLEET_API_KEY": vkey}, "keys", "create", "--name", "nope")
    assert r.returncode == 1 and "keys.manage" in r.stderr  # the viewer's key was used, not the admin session
    assert vpnfleet(env, "keys", "ls").returncode == 0  # without it, the session
    # a session is only ever sent to the controller it was made for
    other = {**env, "VPNFLEET_URL": "https://127.0.0.1:9"}
    r = vpnfleet(other, "keys", "ls")
    assert r.returncode == 1 and "no API key" in r.stderr


def controller_cli(ctl: ControllerProcess, *argv: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller.main", *argv], env=ctl.env, input=stdin, text=True,
                          capture_output=True, timeout=120, cwd=ctl.cwd)


def test_create_admin(ctl: ControllerProcess, home: Path, tmp_path: Path) -> None:
    name, password = f"ops-{uuid.uuid4().hex[:6]}", "Brand-new-admin-pass-1"
    assert controller_cli(ctl, "create-admin", "--username", name, "--password-stdin", stdin="\n").returncode == 1
    r = controller_cli(ctl, "create-admin", "--username", name, "--password-stdin", stdin="short\n")
    assert r.returncode == 1 and "at least" in r.stderr
    r = controller_cli(ctl, "create-admin", "--username", name, "--password-stdin", stdin=password + "\n")
    assert r.returncode == 0, r.stderr
    assert password not in r.stdout + r.stderr and "created" in r.stdout
    ctl.restart()  # a running controller loads accounts at start (the message says so)
    env = env_for(ctl, home, tmp_path)
    assert vpnfleet(env, "login", "-u", name, "--password-stdin", stdin=password + "\n").returncode == 0
    # an admin: it sees every account's keys (keys.manage_all)
    assert "admin" in {k["username"] for k in as_json(vpnfleet(env, "keys", "ls", "--json"))["items"]}
    # again: a new password for the same account, no restart needed; its sign-ins end
    r = controller_cli(ctl, "create-admin", "--username", name, "--password-stdin", stdin=password + "2\n")
    assert r.returncode == 0 and "new password" in r.stdout
    assert vpnfleet(env, "login", "-u", name, "--password-stdin", stdin=password + "\n").returncode == 1
    assert vpnfleet(env, "login", "-u", name, "--password-stdin", stdin=password + "2\n").returncode == 0
    # an existing account of another role is not made an admin
    viewer = ctl.api.post("/api/v1/users", json={"username": f"v-{uuid.uuid4().hex[:6]}", "role": "viewer",
                                                 "password": "Correct-horse-battery-9"}).json()
    r = controller_cli(ctl, "create-admin", "--username", viewer["username"], "--password-stdin",
                       stdin=password + "\n")
    assert r.returncode == 1 and "viewer" in r.stderr
    assert ctl.api.get(f"/api/v1/users/{viewer['id']}").json()["role"] == "viewer"
