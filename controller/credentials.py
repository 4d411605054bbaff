"""Per-node subscriber credentials (pure functions).

A subscriber's VMess/VLESS id is different on every node: a MAC of the node id under the subscriber's own
secret (keyed BLAKE2b, one C call: a push renders it for every subscriber of every node), shaped as a UUID. A node therefore only ever learns the ids that work on it, and a stolen node
leaks no credential valid anywhere else. Rotation replaces the secret, which changes every node's id at once.

Subscribers created before per-node ids had one id shared by every node (Subscriber.credential_uuid). Until
the operator's cut-over (by default the subscriber's next rotation) nodes also carry that shared id, as a
second V2Ray user whose email is the subscriber id plus SHARED_EMAIL_SUFFIX, so apps that have not refreshed
their subscription keep working. Usage of both users lands on the subscriber (subscriber_of).
"""

from __future__ import annotations

import hashlib
import secrets

#: V2Ray email of a subscriber's legacy shared id on a node (the subscriber id, then this).
SHARED_EMAIL_SUFFIX = "+shared"
#: BLAKE2b personalisation: these MACs are never confused with any other use of the same key.
_PERSON = b"vpnfleet-node-v1"


def new_secret() -> str:
    """A fresh per-subscriber secret (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


def node_credential(secret: str, node_uuid: str) -> str:
    """The subscriber's VMess/VLESS id on one node: a UUID (RFC 9562 version 8, "custom") from the MAC."""
    h = hashlib.blake2b(node_uuid.encode(), key=secret.encode(), digest_size=16, person=_PERSON).hexdigest()
    # Version nibble 8; variant bits 10xx (8, 9, a or b). Formatted by hand: uuid.UUID() costs twice the MAC.
    return f"{h[:8]}-{h[8:12]}-8{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def shared_email(subscriber_id: str) -> str:
    """The V2Ray email of the subscriber's legacy shared id."""
    return subscriber_id + SHARED_EMAIL_SUFFIX


def subscriber_of(email: str) -> str:
    """The subscriber id a V2Ray user's email stands for (the per-node user or the legacy shared one)."""
    return email[: -len(SHARED_EMAIL_SUFFIX)] if email.endswith(SHARED_EMAIL_SUFFIX) else email
