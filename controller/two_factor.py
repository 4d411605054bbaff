"""Second factor: TOTP (RFC 6238, pyotp) with a QR code for enrolment (segno), and one-time recovery codes.

A TOTP code is accepted in its own 30-second window and the one before or after (clock drift, a slow typist),
and only once: the caller stores the accepted step and passes it back, and a step at or before it is refused,
so a code seen over someone's shoulder cannot be replayed within its window.

Recovery codes are 80-bit random strings (16 base32 characters, shown as four groups of four), stored as
SHA-256 hashes. Why not Argon2 like passwords: a slow KDF protects low-entropy secrets from an offline guesser;
80 random bits are out of reach of one even at GPU speed, and an unsalted hash lets a presented code be looked
up by its hash instead of checked against each of the account's ten Argon2 hashes (ten slow checks per try).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

import pyotp
import segno

ISSUER = "vpnfleet"
#: seconds per TOTP step (RFC 6238's default; every authenticator app assumes it)
INTERVAL = 30
DIGITS = 6
#: steps either side of the current one a code may come from
VALID_WINDOW = 1
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # base32, lower case: no 0/O or 1/l to confuse
_RECOVERY_LENGTH = 16  # 16 x 5 bits = 80 bits


def new_secret() -> str:
    """A new TOTP secret: 160 random bits, base32 (what authenticator apps take)."""
    return pyotp.random_base32(32)


def otpauth_uri(secret: str, username: str, issuer: str = ISSUER) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app scans."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL).provisioning_uri(name=username, issuer_name=issuer)


def qr_data_url(uri: str) -> str:
    """The URI as a QR code, an SVG ``data:`` URL an <img> shows as is."""
    return segno.make(uri, error="m").svg_data_uri(scale=4)


def matching_step(secret: str, code: str, after_step: int | None, now: float | None = None) -> int | None:
    """The time step ``code`` belongs to (within ``VALID_WINDOW`` of now) when it is later than ``after_step``,
    else None. Every candidate is compared in constant time."""
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL)
    current = int((time.time() if now is None else now) // INTERVAL)
    found = None
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), code) and (after_step is None or step > after_step):
            found = step
    return found


def new_recovery_codes(count: int = RECOVERY_CODES) -> list[str]:
    """``count`` new recovery codes, e.g. ``k7qm-2xha-9pzt-wd4e``... (shown once; store ``recovery_hash``)."""
    codes = []
    for _ in range(count):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
        codes.append("-".join(raw[i:i + 4] for i in range(0, _RECOVERY_LENGTH, 4)))
    return codes


def normalise_recovery_code(code: str) -> str:
    """What a typed recovery code means: case, spaces and dashes do not matter."""
    return "".join(c for c in code.lower() if c not in " -\t")


def recovery_hash(code: str) -> str:
    """The stored form of a recovery code (SHA-256 of its normalised text; see the module docstring)."""
    return hashlib.sha256(normalise_recovery_code(code).encode()).hexdigest()


def looks_like_totp(code: str) -> bool:
    """Six digits: a TOTP code rather than a recovery code."""
    stripped = code.strip().replace(" ", "")
    return len(stripped) == DIGITS and stripped.isascii() and stripped.isdigit()
