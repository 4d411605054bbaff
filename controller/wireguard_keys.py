"""WireGuard keys: Curve25519 key pairs and preshared keys, base64 as ``wg genkey``/``wg pubkey``/``wg genpsk`` print them.

Pure: no I/O beyond the OS random source. Keys from ``cryptography``'s X25519 match ``wg pubkey``.
"""

from __future__ import annotations

import base64
import binascii
import secrets

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from controller.errors import ValidationFailed

KEY_LENGTH = 32


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _clamp(raw: bytes) -> bytes:
    """Curve25519 clamping, as ``wg genkey`` does (X25519 clamps anyway; this makes stored keys identical in form)."""
    b = bytearray(raw)
    b[0] &= 248
    b[31] = (b[31] & 127) | 64
    return bytes(b)


def validate_key(value: object, field: str = "public_key") -> str:
    """A base64 WireGuard key (exactly 32 bytes) in canonical form; ValidationFailed naming ``field`` otherwise."""
    why = "must be a base64-encoded 32-byte WireGuard key (44 characters ending in '=')"
    if not isinstance(value, str):
        raise ValidationFailed(f"{field} {why}", {field: why})
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValidationFailed(f"{field} {why}", {field: why}) from None
    if len(raw) != KEY_LENGTH:
        raise ValidationFailed(f"{field} {why}", {field: why})
    return _b64(raw)


def public_key_of(private_b64: str, field: str = "private_key") -> str:
    """The public key (base64) of a base64 private key, like ``wg pubkey``."""
    raw = base64.b64decode(validate_key(private_b64, field))
    public = X25519PrivateKey.from_private_bytes(raw).public_key()
    return _b64(public.public_bytes(Encoding.Raw, PublicFormat.Raw))


def generate_keypair() -> tuple[str, str]:
    """A new ``(private_b64, public_b64)`` pair."""
    private = _b64(_clamp(secrets.token_bytes(KEY_LENGTH)))
    return private, public_key_of(private)


def generate_preshared_key() -> str:
    """A new preshared key: 32 random bytes, base64 (like ``wg genpsk``)."""
    return _b64(secrets.token_bytes(KEY_LENGTH))
