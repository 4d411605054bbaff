"""Access tokens: short-lived JWTs (PyJWT, HS256) signed with keys kept in DATA_DIR/jwt/keys.json (0600).

The signing key rotates every ``auth.jwt_key_days``. A retired key still verifies the tokens it signed until
they expire (``access_token_ttl`` after it was retired), so a rotation logs nobody out; then it is dropped.
Each token names its key (the ``kid`` header).

Claims: ``sub`` (the account id), ``sid`` (the sign-in session, so logging out ends its tokens at once),
``typ`` (``access``; ``mfa`` for the minutes between a password and its second factor; ``setup`` for an account
that must enrol 2FA first), ``iat``, ``exp``, ``jti``, ``iss``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jwt

from controller.errors import TokenExpired, TokenInvalid
from controller.private_files import write_private

ISSUER = "vpnfleet"
ALGORITHM = "HS256"
KEYS_FILE = "keys.json"
#: token types: a full access token; a second-factor challenge; an account that must enrol 2FA first
ACCESS, MFA, SETUP = "access", "mfa", "setup"


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says."""

    account_id: int
    session_id: str
    type: str
    expires_at: dt.datetime


@dataclass
class _Key:
    kid: str
    secret: bytes
    created_at: dt.datetime
    retired_at: dt.datetime | None = None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class TokenSigner:
    """Issues and verifies access tokens with the key ring in ``directory``."""

    def __init__(self, directory: Path, access_ttl: float, rotate_after: dt.timedelta,
                 clock: Callable[[], dt.datetime] = _now) -> None:
        self.directory = directory
        self.access_ttl = access_ttl
        self.rotate_after = rotate_after
        self.clock = clock
        self._lock = threading.Lock()
        self._keys: list[_Key] = []  # newest last; the last one signs

    @property
    def path(self) -> Path:
        return self.directory / KEYS_FILE

    def load(self) -> None:
        """Read the key ring (making its first key on a first start) and rotate it if it is due."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.path.exists():
            self._keys = [_Key(k["kid"], base64.b64decode(k["secret"]), dt.datetime.fromisoformat(k["created_at"]),
                               dt.datetime.fromisoformat(k["retired_at"]) if k.get("retired_at") else None)
                          for k in json.loads(self.path.read_text())["keys"]]
        if not self._keys:
            self._keys = [self._new_key()]
            self._save()
        self.rotate_if_due()

    def rotate_if_due(self) -> bool:
        """Rotate when the signing key is older than ``rotate_after``; True when it did."""
        if self.clock() - self._keys[-1].created_at < self.rotate_after:
            return False
        self.rotate()
        return True

    def rotate(self) -> None:
        """A new signing key; the old one verifies what it signed until those tokens expire, then goes."""
        with self._lock:
            now = self.clock()
            for key in self._keys:
                key.retired_at = key.retired_at or now
            grace = dt.timedelta(seconds=self.access_ttl)
            self._keys = [k for k in self._keys if k.retired_at is None or now - k.retired_at <= grace]
            self._keys.append(self._new_key())
            self._save()

    def issue(self, account_id: int, session_id: str, type_: str = ACCESS, ttl: float | None = None) -> str:
        now = self.clock()
        key = self._keys[-1]
        claims = {"iss": ISSUER, "sub": str(account_id), "sid": session_id, "typ": type_,
                  "iat": int(now.timestamp()), "exp": int(now.timestamp() + (ttl or self.access_ttl)),
                  "jti": uuid.uuid4().hex}
        return jwt.encode(claims, key.secret, algorithm=ALGORITHM, headers={"kid": key.kid})

    def verify(self, token: str, expected_types: tuple[str, ...] = (ACCESS,)) -> TokenClaims:
        """The claims of a token we signed, of one of ``expected_types``; TokenExpired or TokenInvalid
        otherwise."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError:
            raise TokenInvalid("malformed token") from None
        key = next((k for k in self._keys if k.kid == kid), None)
        if key is None:
            raise TokenInvalid("token signed by an unknown or retired key")
        now = self.clock()
        if key.retired_at is not None and now - key.retired_at > dt.timedelta(seconds=self.access_ttl):
            raise TokenInvalid("token signed by a retired key")
        try:
            # expiry is checked below against self.clock (PyJWT would use the system clock, for iat too)
            claims: dict[str, Any] = jwt.decode(
                token, key.secret, algorithms=[ALGORITHM], issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "sid", "typ"], "verify_exp": False, "verify_iat": False})
            expires = dt.datetime.fromtimestamp(int(claims["exp"]), dt.timezone.utc)
        except (jwt.InvalidTokenError, TypeError, ValueError, OverflowError) as exc:
            raise TokenInvalid(f"invalid token: {exc}") from None
        if expires <= now:
            raise TokenExpired("token expired; refresh it (POST /api/v1/auth/refresh) or sign in again")
        if claims["typ"] not in expected_types:
            raise TokenInvalid(f"a {claims['typ']} token cannot be used here")
        try:
            account_id = int(claims["sub"])
        except (TypeError, ValueError):
            raise TokenInvalid("invalid token subject") from None
        return TokenClaims(account_id, str(claims["sid"]), str(claims["typ"]), expires)

    def _new_key(self) -> _Key:
        return _Key(kid=secrets.token_hex(8), secret=secrets.token_bytes(32), created_at=self.clock())

    def _save(self) -> None:
        data = {"keys": [{"kid": k.kid, "secret": base64.b64encode(k.secret).decode(),
                          "created_at": k.created_at.isoformat(),
                          "retired_at": k.retired_at.isoformat() if k.retired_at else None} for k in self._keys]}
        write_private(self.path, json.dumps(data, indent=1).encode())


def looks_like_jwt(presented: str) -> bool:
    """A JWT (three base64url parts) rather than an API key (``vpf_...``)."""
    return presented.count(".") == 2 and presented.startswith("eyJ")
