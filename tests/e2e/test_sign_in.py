"""Sessions against a real controller over TLS: login, refresh rotation and reuse detection, logout, lockout
with the same answers for unknown names, expired and tampered tokens, password changes, the audit log."""

from __future__ import annotations

import base64
import json
import re
import sqlite3
import time
from typing import Any, Iterator

import httpx
import pytest

from tests.controller_process import ControllerProcess
from tests.accounts import Person, seed_accounts

ACCESS_TTL = 30
LOCKOUT = 4
ATTEMPTS = 3
ALICE = Person("alice", "alice-Secret-Passw0rd")
BOB = Person("bob", "bob-Secret-Passw0rd1")  # the one that gets locked
CAROL = Person("Carol", "carol-Secret-Passw0rd")
DAVE = Person("dave", "dave-Secret-Passw0rd1", status="suspended")


@pytest.fixture(scope="module")
def ctl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProcess]:
    base = tmp_path_factory.mktemp("sign-in")
    config = base / "config.yaml"
    config.write_text(f"auth:\n  access_token_ttl: {ACCESS_TTL}\n  max_login_attempts: {ATTEMPTS}\n"
                      f"  lockout_seconds: {LOCKOUT}\n")
    seed_accounts(base / "data", [ALICE, BOB, CAROL, DAVE])
    c = ControllerProcess(base / "data", config=config)
    try:
        yield c.start()
    finally:
        c.cleanup()


def login(ctl: ControllerProcess, username: str, password: str, **extra: Any) -> httpx.Response:
    with ctl.http_client(timeout=30) as client:
        return client.post("/api/v1/auth/login", json={"username": username, "password": password, **extra})


def signed_in(ctl: ControllerProcess, person: Person, **extra: Any) -> dict[str, Any]:
    r = login(ctl, person.username, person.password, **extra)
    assert r.status_code == 200, r.text
    return r.json()


def bearer(ctl: ControllerProcess, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
    with ctl.http_client(timeout=30) as client:
        return client.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs)


def refresh(ctl: ControllerProcess, token: str) -> httpx.Response:
    with ctl.http_client(timeout=30) as client:
        return client.post("/api/v1/auth/refresh", json={"refresh_token": token})


def error_code(r: httpx.Response) -> str:
    return r.json()["error"]["code"]


def comparable(r: httpx.Response) -> tuple[int, dict[str, Any], dict[str, str]]:
    """What a caller sees of an answer, but the request id."""
    body = r.json()
    body["error"].pop("request_id", None)
    headers = {k: v for k, v in r.headers.items() if k.lower() in ("retry-after", "www-authenticate",
                                                                   "content-type", "content-length")}
    return r.status_code, body, headers


def test_login_answers_with_tokens_and_the_user(ctl: ControllerProcess) -> None:
    answer = signed_in(ctl, Person("admin", ctl.admin_password()))
    assert set(answer) == {"access_token", "token_type", "expires_in", "refresh_token", "refresh_expires_in", "user"}
    assert answer["token_type"] == "bearer" and answer["expires_in"] == ACCESS_TTL
    assert answer["refresh_token"].startswith("vpr_") and 86000 < answer["refresh_expires_in"] <= 86400
    user = answer["user"]
    assert {k: user[k] for k in ("username", "role", "permissions", "two_factor_enabled", "must_change_password")} \
        == {"username": "admin", "role": "admin", "permissions": ["*"], "two_factor_enabled": False,
            "must_change_password": False}
    assert user["last_login"] is not None
    me = bearer(ctl, "GET", "/api/v1/auth/me", answer["access_token"])
    assert me.status_code == 200 and me.json()["username"] == "admin" and me.json()["status"] == "active"
    assert bearer(ctl, "GET", "/api/v1/nodes", answer["access_token"]).status_code == 200
    # only hashes are stored
    with sqlite3.connect(ctl.data_dir / "vpnfleet.db") as db:
        stored = [h for (h,) in db.execute("select token_hash from refresh_tokens")]
    assert stored and answer["refresh_token"] not in stored


def test_names_are_case_insensitive_and_remember_me_lasts_longer(ctl: ControllerProcess) -> None:
    answer = signed_in(ctl, Person("carol", CAROL.password), remember_me=True)
    assert answer["user"]["username"] == "Carol"
    assert answer["refresh_expires_in"] > 29 * 86400


def test_wrong_password_and_unknown_name_answer_alike(ctl: ControllerProcess) -> None:
    wrong = login(ctl, ALICE.username, "not-her-Passw0rd")
    unknown = login(ctl, "nobody-by-this-name", "not-her-Passw0rd")
    assert wrong.status_code == 401 and error_code(wrong) == "INVALID_CREDENTIALS"
    assert comparable(wrong) == comparable(unknown)
    assert signed_in(ctl, ALICE)["user"]["username"] == "alice"  # one wrong password locks nothing


def test_lockout_refuses_even_the_right_password_and_looks_the_same_for_unknown_names(
        ctl: ControllerProcess) -> None:
    for name in (BOB.username, "ghost-of-bob"):
        for _ in range(ATTEMPTS):
            assert login(ctl, name, "Wrong-passw0rd!").status_code == 401
    locked = login(ctl, BOB.username, BOB.password)
    ghost = login(ctl, "ghost-of-bob", BOB.password)
    assert locked.status_code == 429 and error_code(locked) == "TOO_MANY_REQUESTS"
    assert 1 <= locked.json()["error"]["details"]["retry_after"] <= LOCKOUT
    assert int(locked.headers["Retry-After"]) == locked.json()["error"]["details"]["retry_after"]
    # alike but the seconds left (the two locks began a few requests apart)
    seconds = re.compile(r"\d+")
    assert locked.status_code == ghost.status_code and set(locked.headers.keys()) == set(ghost.headers.keys())
    assert seconds.sub("N", locked.json()["error"]["message"]) == seconds.sub("N", ghost.json()["error"]["message"])
    assert locked.json()["error"]["code"] == ghost.json()["error"]["code"]
    with sqlite3.connect(ctl.data_dir / "vpnfleet.db") as db:
        attempts, until = db.execute("select login_attempts, locked_until from accounts "
                                     "where username='bob'").fetchone()
    assert attempts == ATTEMPTS and until is not None
    time.sleep(LOCKOUT + 0.5)
    assert signed_in(ctl, BOB)["user"]["username"] == "bob"
    with sqlite3.connect(ctl.data_dir / "vpnfleet.db") as db:
        assert db.execute("select login_attempts from accounts where username='bob'").fetchone() == (0,)
    # and the audit log has every attempt, with neither password in it
    ops = ctl.api.get("/api/v1/operations", params={"action": "auth.login", "size": 200}).json()["items"]
    assert sum(1 for o in ops if o["status_code"] == 429) >= 2
    assert sum(1 for o in ops if o["status_code"] == 401) >= 2 * ATTEMPTS
    assert BOB.password not in json.dumps(ops) and "Wrong-passw0rd!" not in json.dumps(ops)


def test_a_suspended_account_cannot_sign_in(ctl: ControllerProcess) -> None:
    r = login(ctl, DAVE.username, DAVE.password)
    assert r.status_code == 403 and r.json()["error"]["details"]["status"] == "suspended"
    assert login(ctl, DAVE.username, "Wrong-passw0rd!").status_code == 401  # says nothing without the password


def test_refresh_rotates_and_a_reused_token_revokes_the_family(ctl: ControllerProcess) -> None:
    first = signed_in(ctl, ALICE)
    second = refresh(ctl, first["refresh_token"])
    assert second.status_code == 200, second.text
    second = second.json()
    assert second["refresh_token"] != first["refresh_token"] and second["access_token"] != first["access_token"]
    assert bearer(ctl, "GET", "/api/v1/auth/me", second["access_token"]).status_code == 200
    # seed 001 also sends it as a bearer token
    with ctl.http_client(timeout=30) as client:
        third = client.post("/api/v1/auth/refresh", headers={"Authorization": f"Bearer {second['refresh_token']}"})
    assert third.status_code == 200, third.text
    third = third.json()
    other_session = signed_in(ctl, ALICE)  # another sign-in of alice: not of this family
    # the thief replays the first token: the whole family ends, the owner's fresh tokens too
    reused = refresh(ctl, first["refresh_token"])
    assert reused.status_code == 401 and error_code(reused) == "TOKEN_INVALID"
    for token in (first["access_token"], second["access_token"], third["access_token"]):
        r = bearer(ctl, "GET", "/api/v1/auth/me", token)
        assert r.status_code == 401 and error_code(r) == "TOKEN_INVALID", r.text
    assert error_code(refresh(ctl, third["refresh_token"])) == "TOKEN_INVALID"
    assert bearer(ctl, "GET", "/api/v1/auth/me", other_session["access_token"]).status_code == 200
    with sqlite3.connect(ctl.data_dir / "vpnfleet.db") as db:
        reasons = {r for (r,) in db.execute("select revoked_reason from auth_sessions where revoked_at is not null")}
    assert "refresh_reuse" in reasons
    ops = ctl.api.get("/api/v1/operations", params={"action": "auth.refresh_reuse"}).json()["items"]
    assert ops and ops[0]["result"] == "fail"
    assert first["refresh_token"] not in json.dumps(ops)


def test_refresh_with_nonsense(ctl: ControllerProcess) -> None:
    for token in ("vpr_" + "A" * 43, "not-a-token"):
        r = refresh(ctl, token)
        assert r.status_code == 401 and error_code(r) == "TOKEN_INVALID"
    with ctl.http_client(timeout=30) as client:
        assert error_code(client.post("/api/v1/auth/refresh")) == "TOKEN_INVALID"
        # an access token is no refresh token
        access = signed_in(ctl, ALICE)["access_token"]
        assert error_code(client.post("/api/v1/auth/refresh", json={"refresh_token": access})) == "TOKEN_INVALID"


def test_logout_revokes_at_once(ctl: ControllerProcess) -> None:
    a, b = signed_in(ctl, ALICE), signed_in(ctl, ALICE)
    r = bearer(ctl, "POST", "/api/v1/auth/logout", a["access_token"])
    assert r.status_code == 204
    gone = bearer(ctl, "GET", "/api/v1/auth/me", a["access_token"])
    assert gone.status_code == 401 and error_code(gone) == "TOKEN_INVALID"
    assert error_code(refresh(ctl, a["refresh_token"])) == "TOKEN_INVALID"
    assert bearer(ctl, "GET", "/api/v1/auth/me", b["access_token"]).status_code == 200
    # everywhere
    c = signed_in(ctl, ALICE)
    assert bearer(ctl, "POST", "/api/v1/auth/logout", c["access_token"], json={"all": True}).status_code == 204
    for s in (b, c):
        assert bearer(ctl, "GET", "/api/v1/auth/me", s["access_token"]).status_code == 401
    ops = ctl.api.get("/api/v1/operations", params={"action": "auth.logout"}).json()["items"]
    assert {o["actor"] for o in ops} == {"alice"}


def test_logout_with_an_api_key_has_no_session(ctl: ControllerProcess) -> None:
    r = ctl.api.post("/api/v1/auth/logout")
    assert r.status_code == 400 and "API key" in r.json()["error"]["message"]
    assert ctl.api.get("/api/v1/auth/me").json()["username"] == "admin"


def test_tampered_token(ctl: ControllerProcess) -> None:
    token = signed_in(ctl, ALICE)["access_token"]
    header, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "1"  # the admin
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    for bad in (f"{header}.{forged}.{sig}", f"{header}.{payload}.{sig[:-4]}AAAA"):
        r = bearer(ctl, "GET", "/api/v1/auth/me", bad)
        assert r.status_code == 401 and error_code(r) == "TOKEN_INVALID"


def test_change_password_ends_other_sessions(ctl: ControllerProcess) -> None:
    person = Person("Carol", CAROL.password)
    here, elsewhere = signed_in(ctl, person), signed_in(ctl, person)
    token = here["access_token"]
    weak = bearer(ctl, "PUT", "/api/v1/auth/password", token,
                  json={"current_password": CAROL.password, "new_password": "short"})
    assert weak.status_code == 422 and "new_password" in weak.json()["error"]["details"]
    wrong = bearer(ctl, "PUT", "/api/v1/auth/password", token,
                   json={"current_password": "Not-the-passw0rd", "new_password": "A-new-Passw0rd-for-her"})
    assert wrong.status_code == 422 and "current_password" in wrong.json()["error"]["details"]
    ok = bearer(ctl, "PUT", "/api/v1/auth/password", token,
                json={"current_password": CAROL.password, "new_password": "A-new-Passw0rd-for-her"})
    assert ok.status_code == 204, ok.text
    assert bearer(ctl, "GET", "/api/v1/auth/me", token).status_code == 200
    assert error_code(bearer(ctl, "GET", "/api/v1/auth/me", elsewhere["access_token"])) == "TOKEN_INVALID"
    assert login(ctl, "carol", CAROL.password).status_code == 401
    assert login(ctl, "carol", "A-new-Passw0rd-for-her").status_code == 200


def test_an_expired_access_token_says_so(ctl: ControllerProcess) -> None:
    answer = signed_in(ctl, ALICE)
    time.sleep(ACCESS_TTL + 1.5)
    r = bearer(ctl, "GET", "/api/v1/auth/me", answer["access_token"])
    assert r.status_code == 401 and error_code(r) == "TOKEN_EXPIRED"
    fresh = refresh(ctl, answer["refresh_token"])  # the session lives on
    assert fresh.status_code == 200
    assert bearer(ctl, "GET", "/api/v1/auth/me", fresh.json()["access_token"]).status_code == 200
