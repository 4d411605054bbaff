"""2FA against a real controller and a real pyotp clock: enrolment with a QR code, the login's second step
(the window either side, each code once), recovery codes once, wrong codes locking, a role that must enrol."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pyotp
import pytest

from tests.controller_process import ControllerProcess
from tests.accounts import Person, seed_accounts

ATTEMPTS = 3
ERIN = Person("erin", "erin-Secret-Passw0rd", role="manager")
FRANK = Person("frank", "frank-Secret-Passw0rd", role="viewer")  # gets locked by wrong codes


@pytest.fixture(scope="module")
def ctl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProcess]:
    base = tmp_path_factory.mktemp("2fa")
    config = base / "config.yaml"
    config.write_text(f"auth:\n  max_login_attempts: {ATTEMPTS}\n  lockout_seconds: 600\n")
    seed_accounts(base / "data", [ERIN, FRANK])
    c = ControllerProcess(base / "data", config=config)
    try:
        yield c.start()
    finally:
        c.cleanup()


def post(ctl: ControllerProcess, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with ctl.http_client(timeout=30) as client:
        return client.post(path, headers=headers, **kwargs)


def login(ctl: ControllerProcess, person: Person) -> dict[str, Any]:
    r = post(ctl, "/api/v1/auth/login", json={"username": person.username, "password": person.password})
    assert r.status_code == 200, r.text
    return r.json()


def steady_window() -> None:
    """Wait until the current 30-s TOTP window has at least 5 s left, so a code computed here is judged in the
    same window by the controller."""
    left = 30 - time.time() % 30
    if left < 5:
        time.sleep(left + 0.2)


def enrol(ctl: ControllerProcess, person: Person) -> tuple[str, list[str]]:
    """Sign in and turn 2FA on with a code from the previous window (accepted); the secret and recovery codes."""
    token = login(ctl, person)["access_token"]
    setup = post(ctl, "/api/v1/auth/2fa/setup", token)
    assert setup.status_code == 200, setup.text
    secret = setup.json()["secret"]
    assert pyotp.parse_uri(setup.json()["otpauth_uri"]).secret == secret
    assert setup.json()["qr_code"].startswith("data:image/svg+xml")
    steady_window()
    enabled = post(ctl, "/api/v1/auth/2fa/enable", token, json={"code": pyotp.TOTP(secret).at(time.time() - 30)})
    assert enabled.status_code == 200, enabled.text
    codes = enabled.json()["recovery_codes"]
    assert len(codes) == 10 and enabled.json()["access_token"] is None
    return secret, codes


def verify(ctl: ControllerProcess, mfa_token: str, code: str, method: str = "totp") -> httpx.Response:
    return post(ctl, "/api/v1/auth/verify-2fa", mfa_token, json={"code": code, "method": method})


def test_enrol_then_sign_in_with_each_kind_of_code_once(ctl: ControllerProcess) -> None:
    secret, recovery = enrol(ctl, ERIN)
    totp = pyotp.TOTP(secret)
    challenge = login(ctl, ERIN)
    assert set(challenge) == {"two_factor_required", "mfa_token", "expires_in", "methods"}
    assert challenge["two_factor_required"] is True and challenge["expires_in"] <= 300
    assert challenge["methods"] == ["totp", "recovery"]
    mfa = challenge["mfa_token"]
    # the mfa token is no access token
    with ctl.http_client(timeout=30) as client:
        r = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {mfa}"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "TOKEN_INVALID"
    steady_window()
    stale = verify(ctl, mfa, totp.at(time.time() - 90))
    assert stale.status_code == 401 and stale.json()["error"]["code"] == "INVALID_CREDENTIALS"
    code = totp.now()
    done = verify(ctl, mfa, code)
    assert done.status_code == 200, done.text
    tokens = done.json()
    assert tokens["user"]["two_factor_enabled"] is True and tokens["refresh_token"].startswith("vpr_")
    with ctl.http_client(timeout=30) as client:
        assert client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}) \
            .status_code == 200
    # the same challenge completes once
    assert verify(ctl, mfa, recovery[0], "recovery").json()["error"]["code"] == "TOKEN_INVALID"
    # the same code is good once, even in its window, on a new login
    again = login(ctl, ERIN)["mfa_token"]
    assert verify(ctl, again, code).status_code == 401
    assert verify(ctl, again, recovery[0].upper(), "recovery").status_code == 200
    third = login(ctl, ERIN)["mfa_token"]
    assert verify(ctl, third, recovery[0], "recovery").status_code == 401
    assert verify(ctl, third, recovery[1], "recovery").status_code == 200
    # nothing secret reached the audit log
    ops = ctl.api.get("/api/v1/operations", params={"action": "auth.", "size": 200}).json()["items"]
    text = str(ops)
    assert secret not in text and code not in text and recovery[0] not in text and mfa not in text
    assert {"auth.verify_2fa", "auth.2fa_enabled", "auth.login"} <= {o["action"] for o in ops}


def test_new_recovery_codes_and_turning_2fa_off(ctl: ControllerProcess) -> None:
    person = Person("admin", ctl.admin_password())
    secret, old_codes = enrol(ctl, person)
    totp = pyotp.TOTP(secret)
    mfa = login(ctl, person)["mfa_token"]
    steady_window()
    token = verify(ctl, mfa, totp.now()).json()["access_token"]
    # new codes need a code (a recovery code does); the old ones stop working
    wrong = post(ctl, "/api/v1/auth/2fa/recovery-codes", token, json={"code": "000000"})
    assert wrong.status_code == 422 and "code" in wrong.json()["error"]["details"]
    fresh = post(ctl, "/api/v1/auth/2fa/recovery-codes", token, json={"code": old_codes[0]})
    assert fresh.status_code == 200 and len(fresh.json()["recovery_codes"]) == 10
    assert set(fresh.json()["recovery_codes"]).isdisjoint(old_codes)
    mfa = login(ctl, person)["mfa_token"]
    assert verify(ctl, mfa, old_codes[1], "recovery").status_code == 401
    token = verify(ctl, mfa, fresh.json()["recovery_codes"][0], "recovery").json()["access_token"]
    # off: the password and a code
    bad = post(ctl, "/api/v1/auth/2fa/disable", token, json={"password": "Wrong-passw0rd", "code": "123456"})
    assert bad.status_code == 422 and "password" in bad.json()["error"]["details"]
    off = post(ctl, "/api/v1/auth/2fa/disable", token,
               json={"password": person.password, "code": fresh.json()["recovery_codes"][1]})
    assert off.status_code == 204, off.text
    assert "access_token" in login(ctl, person)


def test_wrong_codes_count_towards_the_lockout(ctl: ControllerProcess) -> None:
    enrol(ctl, FRANK)
    mfa = login(ctl, FRANK)["mfa_token"]
    for _ in range(ATTEMPTS):
        assert verify(ctl, mfa, "000000").status_code == 401
    locked = verify(ctl, mfa, "000000")
    assert locked.status_code == 429 and locked.json()["error"]["details"]["retry_after"] > 0
    assert post(ctl, "/api/v1/auth/login", json={"username": FRANK.username, "password": FRANK.password}) \
        .status_code == 429


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[ControllerProcess]:
    """A controller whose admins must use 2FA."""
    config = tmp_path / "config.yaml"
    config.write_text("auth:\n  require_two_factor_roles: [admin]\n")
    c = ControllerProcess(tmp_path / "data", config=config)
    try:
        yield c.start()
    finally:
        c.cleanup()


def test_a_role_that_must_enrol_first(strict: ControllerProcess) -> None:
    person = Person("admin", strict.admin_password())
    answer = login(strict, person)
    assert set(answer) == {"two_factor_setup_required", "setup_token", "expires_in"}
    token = answer["setup_token"]
    # the setup token opens enrolment and nothing else
    with strict.http_client(timeout=30) as client:
        for path in ("/api/v1/nodes", "/api/v1/auth/me"):
            r = client.get(path, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401 and r.json()["error"]["code"] == "TOKEN_INVALID", path
    setup = post(strict, "/api/v1/auth/2fa/setup", token)
    assert setup.status_code == 200, setup.text
    steady_window()
    enabled = post(strict, "/api/v1/auth/2fa/enable", token, json={"code": pyotp.TOTP(setup.json()["secret"]).now()})
    assert enabled.status_code == 200, enabled.text
    body = enabled.json()
    assert len(body["recovery_codes"]) == 10 and body["user"]["two_factor_enabled"] is True
    with strict.http_client(timeout=30) as client:
        assert client.get("/api/v1/nodes", headers={"Authorization": f"Bearer {body['access_token']}"}) \
            .status_code == 200
    # the setup token is spent; the role may not turn 2FA off
    assert post(strict, "/api/v1/auth/2fa/enable", token, json={"code": "123456"}).status_code in (401, 409)
    off = post(strict, "/api/v1/auth/2fa/disable", body["access_token"],
               json={"password": person.password, "code": body["recovery_codes"][0]})
    assert off.status_code == 403
    # from now on, a login asks for the second factor
    assert login(strict, person)["two_factor_required"] is True
