"""REALITY values (pure): the node's X25519 key pair, short ids, the target site, and their validation.

A node's REALITY key pair is made here, in-process (never by parsing ``xray x25519``, whose output changed
three times). Both keys are the base64url text, without padding, of the raw 32-byte X25519 keys: what Xray's
``privateKey`` takes and what clients call ``pbk`` / ``public_key`` / ``public-key``. The private key only
ever leaves the controller in the node's desired state, over mTLS; the public key and the short ids are
public (subscriptions carry them).

Every ``check_*`` function raises :class:`ValueError` with a message that says what is wrong (never echoing a
key); callers turn it into a validation error naming their field.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import secrets

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from agent.addresses import blocked_reason
from agent.commands import parse_target

#: The target site REALITY borrows the handshake of, and the names clients may ask for (settings defaults).
DEFAULT_DEST = "www.microsoft.com:443"
DEFAULT_SERVER_NAMES = ("www.microsoft.com",)
#: Bytes of a short id made by new_short_id (16 hex characters, the most REALITY takes).
SHORT_ID_BYTES = 8
MAX_SHORT_IDS = 8
MAX_SERVER_NAMES = 16

_B64URL = re.compile(r"[A-Za-z0-9_-]{43}")
_HEX = re.compile(r"(?:[0-9a-f]{2}){0,8}")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _raw_key(text: str, what: str) -> bytes:
    """The 32 raw bytes of a base64url (no padding) key; ValueError without echoing the key."""
    if not isinstance(text, str) or not _B64URL.fullmatch(text):
        raise ValueError(f"the REALITY {what} must be 43 characters of base64url without padding (32 bytes)")
    try:
        raw = base64.urlsafe_b64decode(text + "=")
    except (binascii.Error, ValueError):  # pragma: no cover - the pattern already excludes it
        raise ValueError(f"the REALITY {what} is not base64url") from None
    if _b64url(raw) != text:  # the last character carries bits past the 32 bytes: not a canonical encoding
        raise ValueError(f"the REALITY {what} is not a canonical base64url encoding of 32 bytes")
    return raw


def new_keypair() -> tuple[str, str]:
    """A fresh X25519 key pair: (private key, public key), each base64url of the raw 32 bytes, no padding."""
    private = X25519PrivateKey.generate()
    raw_private = private.private_bytes_raw()
    raw_public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return _b64url(raw_private), _b64url(raw_public)


def public_key_of(private_key: str) -> str:
    """The public key (base64url, no padding) of a private key in the same form."""
    raw = _raw_key(private_key, "private key")
    public = X25519PrivateKey.from_private_bytes(raw).public_key()
    return _b64url(public.public_bytes(Encoding.Raw, PublicFormat.Raw))


def check_private_key(value: str) -> str:
    _raw_key(value, "private key")
    return value


def check_public_key(value: str) -> str:
    _raw_key(value, "public key")
    return value


def new_short_id() -> str:
    """A random short id: 8 bytes as 16 lower-case hex characters."""
    return secrets.token_hex(SHORT_ID_BYTES)


def check_short_id(value: str) -> str:
    """A short id as REALITY takes it: hex, an even number of characters, at most 16 ("" allowed)."""
    if not isinstance(value, str) or not _HEX.fullmatch(value.lower()):
        raise ValueError("a short id must be hex (0-9, a-f), an even number of characters, at most 16")
    return value.lower()


def check_short_ids(values: object) -> list[str]:
    """1 to MAX_SHORT_IDS distinct short ids, normalised to lower case; the first is what subscriptions use,
    so it may not be empty (clients without a short id are the exception, not what we hand out)."""
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError("short_ids must be a non-empty list of hex strings")
    if len(values) > MAX_SHORT_IDS:
        raise ValueError(f"at most {MAX_SHORT_IDS} short ids")
    out = [check_short_id(v) for v in values]
    if len(set(out)) != len(out):
        raise ValueError("short ids must be distinct")
    if not out[0]:
        raise ValueError("the first short id (the one subscriptions carry) may not be empty")
    return out


def check_server_name(value: str) -> str:
    """A DNS host name (what clients send as SNI): labels of letters, digits and hyphens; lower-cased."""
    if not isinstance(value, str):
        raise ValueError("a server name must be a string")
    name = value.strip().rstrip(".").lower()
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise ValueError(f"{value!r} is not a DNS host name")
    if name.replace(".", "").isdigit():
        raise ValueError(f"{value!r} is an address, not a host name (SNI carries names only)")
    return name


def check_server_names(values: object) -> list[str]:
    if isinstance(values, str) or not isinstance(values, (list, tuple)) or not values:
        raise ValueError("server_names must be a non-empty list of host names")
    if len(values) > MAX_SERVER_NAMES:
        raise ValueError(f"at most {MAX_SERVER_NAMES} server names")
    out: list[str] = []
    for v in values:
        name = check_server_name(v)
        if name not in out:
            out.append(name)
    return out


def split_dest(value: str) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``) of the target site: (host, port), a name checked as a server name.
    ValueError otherwise. (Split as the agent splits a tcping target: agent.commands.parse_target.)"""
    if not isinstance(value, str):
        raise ValueError("dest must be a string host:port")
    try:
        host, port = parse_target(value.strip())
    except ValueError as exc:
        raise ValueError(f"{value!r} is not host:port ({exc})") from None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        host = check_server_name(host)
    return host, port


def check_dest(value: str) -> str:
    """dest normalised. An address on or behind the node (loopback, private, link-local, ...) is refused:
    REALITY forwards every unauthenticated connection to dest, so anyone could reach it through the node."""
    host, port = split_dest(value)
    try:
        reason = blocked_reason(host)
    except ValueError:  # a name
        reason = None
    if reason is not None:
        raise ValueError(f"dest {value!r} is {reason}: REALITY forwards every unauthenticated connection to its "
                         "dest, so it must be a public site")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_target(dest: str, server_names: list[str]) -> None:
    """The dest must serve the names clients ask for (Xray#2251): a dest given by name must be one of them.
    (A dest given as an address is taken as the operator's word.)"""
    host, _ = split_dest(dest)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host not in server_names:
            raise ValueError(f"dest {dest!r} is not one of the server names {', '.join(server_names)}: REALITY "
                             "forwards to dest, so clients must ask for a name dest serves") from None


def new_ws_path() -> str:
    """A random WebSocket path for the node's ws-tls inbounds (what a CDN forwards; not guessable)."""
    return "/" + secrets.token_hex(8)
