"""Per-node subscriber credentials (pure functions).

A subscriber's VMess/VLESS id is different on every node: HMAC-SHA256 of the node id under the subscriber's
own secret, shaped as a UUID. A node therefore only ever learns the ids that work on it, and a stolen node
leaks no credential valid anywhere else. Rotation replaces the secret, which changes every node's id at once.

Subscribers created before per-node ids had one id shared by every node (Subscriber.credential_uuid). Until
the operator's cut-over (by default the subscriber's next rotation) nodes also carry that shared id, as a
second V2Ray user whose email is the subscriber id plus SHARED_EMAIL_SUFFIX, so apps that have not refreshed
their subscription keep working. Usage of both users lands on the subscriber (subscriber_of).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

#: V2Ray email of a subscriber's legacy shared id on a node (the subscriber id, then this).
SHARED_EMAIL_SUFFIX = "+shared"
_CONTEXT = b"vpnfleet per-node credential v1\0"


def new_secret() -> str:
    """A fresh per-subscriber secret (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


def node_credential(secret: str, node_uuid: str) -> str:
    """The subscriber's VMess/VLESS id on one node: a UUID (RFC 9562 version 8, "custom") from HMAC-SHA256."""
    digest = bytearray(hmac.new(secret.encode(), _CONTEXT + node_uuid.encode(), hashlib.sha256).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x80  # version 8
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122/9562 variant
    return str(uuid.UUID(bytes=bytes(digest)))


def shared_email(subscriber_id: str) -> str:
    """The V2Ray email of the subscriber's legacy shared id."""
    return subscriber_id + SHARED_EMAIL_SUFFIX


def subscriber_of(email: str) -> str:
    """The subscriber id a V2Ray user's email stands for (the per-node user or the legacy shared one)."""
    return email[: -len(SHARED_EMAIL_SUFFIX)] if email.endswith(SHARED_EMAIL_SUFFIX) else email
