"""Access tokens (controller.tokens.TokenSigner) with a fake clock: expiry, tampering, types, key rotation."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from pathlib import Path

import jwt
import pytest

from controller.errors import TokenExpired, TokenInvalid
from controller.tokens import ACCESS, MFA, SETUP, TokenSigner, looks_like_jwt


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def signer(tmp_path: Path, clock: Clock) -> TokenSigner:
    s = TokenSigner(tmp_path / "jwt", access_ttl=900, rotate_after=dt.timedelta(days=30), clock=clock)
    s.load()
    return s


def test_issue_and_verify(signer: TokenSigner) -> None:
    token = signer.issue(7, "sid-1")
    assert looks_like_jwt(token)
    claims = signer.verify(token)
    assert (claims.account_id, claims.session_id, claims.type) == (7, "sid-1", ACCESS)


def test_key_file_is_private(signer: TokenSigner) -> None:
    assert oct(os.stat(signer.path).st_mode & 0o777) == "0o600"


def test_expired_token(signer: TokenSigner, clock: Clock) -> None:
    token = signer.issue(7, "sid-1")
    clock.advance(899)
    signer.verify(token)
    clock.advance(2)
    with pytest.raises(TokenExpired):
        signer.verify(token)


def test_tampered_tokens(signer: TokenSigner) -> None:
    token = signer.issue(7, "sid-1")
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "1"  # become the admin
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    for bad in (f"{header}.{forged}.{signature}", token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
                "eyJ.not.atoken", jwt.encode({"sub": "7", "sid": "x", "typ": "access", "exp": 2**40, "iat": 0,
                                               "iss": "vpnfleet"}, "a guessed secret of 32 bytes....", algorithm="HS256")):
        with pytest.raises(TokenInvalid):
            signer.verify(bad)
    none_alg = jwt.encode({"sub": "7"}, None, algorithm="none")
    with pytest.raises(TokenInvalid):
        signer.verify(none_alg)


def test_types_are_not_interchangeable(signer: TokenSigner) -> None:
    mfa = signer.issue(7, "c", MFA, 300)
    with pytest.raises(TokenInvalid):
        signer.verify(mfa)  # an mfa challenge is no access token
    assert signer.verify(mfa, (MFA,)).type == MFA
    with pytest.raises(TokenInvalid):
        signer.verify(signer.issue(7, "c", SETUP, 600), (ACCESS, MFA))


def test_rotation_keeps_old_tokens_valid_until_they_expire(signer: TokenSigner, clock: Clock,
                                                           tmp_path: Path) -> None:
    clock.advance(30 * 86400 - 100)
    assert not signer.rotate_if_due()
    old = signer.issue(7, "sid-1")  # 100 s before the key is due
    clock.advance(101)
    assert signer.rotate_if_due()
    new = signer.issue(7, "sid-2")
    assert jwt.get_unverified_header(old)["kid"] != jwt.get_unverified_header(new)["kid"]
    # another process reading the ring (a restart) accepts both
    again = TokenSigner(tmp_path / "jwt", access_ttl=900, rotate_after=dt.timedelta(days=30), clock=clock)
    again.load()
    for s in (signer, again):
        assert s.verify(old).session_id == "sid-1" and s.verify(new).session_id == "sid-2"
    clock.advance(901)  # past the old key's grace: its tokens are gone (expired anyway), the new key's too
    with pytest.raises((TokenInvalid, TokenExpired)):
        signer.verify(old)
    fresh = signer.issue(7, "sid-3")
    signer.rotate()  # a second rotation drops the first key from the ring
    assert signer.verify(fresh).session_id == "sid-3"
    with pytest.raises(TokenInvalid):
        signer.verify(old)
