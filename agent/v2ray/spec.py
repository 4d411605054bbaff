"""The desired V2Ray part as validated values (V2RaySpec), and what changing users means (plan_users).

Everything here is pure. Validation happens once, in spec_from_proto(); the rest of the driver works on
normalised values: listen "" is "0.0.0.0", UUIDs are in canonical lower-case form, log level "" is
"warning". V2Ray compares emails case-insensitively (it lower-cases them in its user maps), so emails are
keyed by `email_key()` wherever two of them could be confused.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import uuid
from typing import Mapping

from agent.egress import EgressSpec, egress_from_proto
from protos import agent_pb2

PROTOCOLS = ("vmess", "vless")
LOG_LEVELS = ("debug", "info", "warning", "error", "none")
DEFAULT_LOG_LEVEL = "warning"
#: The agent's own inbound (V2Ray's gRPC API) carries this tag; desired inbounds may not use it.
RESERVED_TAG = "api"
#: Separator in V2Ray's counter names (user>>>EMAIL>>>traffic>>>uplink): an email containing it is ambiguous.
STATS_SEPARATOR = ">>>"

#: UUIDs with or without dashes, and dashed fragments of them (V2Ray echoes a malformed id it refuses).
_UUID_RE = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F-]{8,}|\b[0-9a-fA-F]{32}\b")
_CANONICAL_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


@dataclasses.dataclass(frozen=True)
class Inbound:
    """One listening inbound; every user of the spec is a user of it."""

    tag: str
    protocol: str  # "vmess" | "vless"
    port: int
    listen: str  # an IP address, "0.0.0.0" for all


@dataclasses.dataclass(frozen=True)
class V2RaySpec:
    """What V2Ray should run. `structure` changes need a restart; `users` changes do not."""

    inbounds: tuple[Inbound, ...]
    #: email -> canonical UUID, in the order the controller listed them.
    users: Mapping[str, str]
    log_level: str
    #: Where subscribers may not go. None only for a config on disk written before the policy existed: it
    #: differs from every desired spec, so such a V2Ray is restarted into one that enforces it.
    egress: EgressSpec | None = EgressSpec()
    #: V2Ray's access log on (off by default: it records every subscriber's source and destinations).
    access_log: bool = False
    #: Show source addresses in the streamed access log (the agent masks them otherwise; no restart needed).
    access_log_addresses: bool = False

    @property
    def structure(self) -> tuple:
        return self.inbounds, self.log_level, self.egress, self.access_log


def email_key(email: str) -> str:
    """How V2Ray tells users apart: emails compare case-insensitively."""
    return email.lower()


def redact_uuids(text: str) -> str:
    """Replace anything shaped like a UUID (a user credential) before text reaches a log or an error."""
    return _UUID_RE.sub("<uuid>", text)


def canonical_uuid(value: str) -> str | None:
    """The UUID in 8-4-4-4-12 lower-case form, or None if value is not a UUID."""
    if _CANONICAL_UUID_RE.fullmatch(value):  # the usual case, 10x cheaper than uuid.UUID()
        return value
    try:
        return str(uuid.UUID(value.strip()))
    except (ValueError, AttributeError):
        return None


def _inbound(index: int, item: agent_pb2.V2RayInbound) -> Inbound:
    tag = item.tag.strip()
    name = f"inbound {tag!r}" if tag else f"inbound #{index + 1}"
    if not tag:
        raise ValueError(f"{name} has no tag")
    if _CONTROL_RE.search(tag):
        raise ValueError(f"{name}: the tag contains control characters")
    if tag == RESERVED_TAG:
        raise ValueError(f"{name}: the tag {RESERVED_TAG!r} is reserved for the agent's API inbound")
    protocol = item.protocol.strip().lower()
    if protocol not in PROTOCOLS:
        raise ValueError(f"{name}: protocol {item.protocol!r} is not supported (use vmess or vless)")
    if not 1 <= item.port <= 65535:
        raise ValueError(f"{name}: port {item.port} is out of range 1..65535")
    listen = item.listen.strip()
    if listen:
        try:
            listen = ipaddress.ip_address(listen).compressed
        except ValueError:
            raise ValueError(f"{name}: listen {item.listen!r} is not an IP address (\"\" listens on all)") from None
    return Inbound(tag=tag, protocol=protocol, port=item.port, listen=listen or "0.0.0.0")


def spec_from_proto(part: agent_pb2.V2RayConfig) -> V2RaySpec:
    """Validate the desired part and normalise it. Raises ValueError naming the inbound or user at fault."""
    inbounds: list[Inbound] = []
    tags: dict[str, Inbound] = {}
    ports: dict[int, Inbound] = {}
    for index, item in enumerate(part.inbounds):
        inbound = _inbound(index, item)
        if inbound.tag in tags:
            raise ValueError(f"inbound tag {inbound.tag!r} is listed twice")
        if inbound.port in ports:
            raise ValueError(
                f"port {inbound.port} is used by both inbound {ports[inbound.port].tag!r} and inbound {inbound.tag!r}"
            )
        tags[inbound.tag] = ports[inbound.port] = inbound
        inbounds.append(inbound)

    users: dict[str, str] = {}
    keys: dict[str, str] = {}
    for index, item in enumerate(part.users):
        email = item.email.strip()
        if not email:
            raise ValueError(f"user #{index + 1} has no email")
        if _CONTROL_RE.search(email) or STATS_SEPARATOR in email:
            raise ValueError(f"user {email!r}: the email may not contain control characters or {STATS_SEPARATOR!r}")
        if email_key(email) in keys:
            raise ValueError(
                f"user {email!r} is listed twice (as {keys[email_key(email)]!r}; V2Ray ignores the case of emails)"
            )
        canonical = canonical_uuid(item.uuid)
        if canonical is None:
            raise ValueError(f"user {email!r}: uuid is not a valid UUID")  # never echo a credential
        keys[email_key(email)] = email
        users[email] = canonical

    level = part.log_level.strip().lower() or DEFAULT_LOG_LEVEL
    if level not in LOG_LEVELS:
        raise ValueError(f"log_level {part.log_level!r} is not one of {', '.join(LOG_LEVELS)} (or \"\")")
    return V2RaySpec(inbounds=tuple(inbounds), users=users, log_level=level, egress=egress_from_proto(part.egress),
                     access_log=part.access_log, access_log_addresses=part.access_log_addresses)


@dataclasses.dataclass(frozen=True)
class UserStep:
    """One HandlerService call for one user on one inbound. `uuid` is set for an add, None for a remove."""

    email: str
    uuid: str | None = None

    @property
    def is_add(self) -> bool:
        return self.uuid is not None


@dataclasses.dataclass
class UserPlan:
    """What to do, per user, on every inbound. The steps of one user run in order (remove before re-add);
    different users are independent and may run concurrently."""

    steps: dict[str, list[UserStep]]  # email_key -> steps
    added: list[str]
    removed: list[str]
    rotated: list[str]

    def __bool__(self) -> bool:
        return bool(self.steps)


def plan_users(old: Mapping[str, str], new: Mapping[str, str]) -> UserPlan:
    """The calls that turn users `old` into users `new` (both email -> uuid).

    A user whose uuid changed (credential rotation) or whose email changed only in case is removed and added
    again: V2Ray cannot change a user in place. Users present in both with the same uuid are not touched.
    """
    old_by_key = {email_key(e): (e, u) for e, u in old.items()}
    new_by_key = {email_key(e): (e, u) for e, u in new.items()}
    plan = UserPlan(steps={}, added=[], removed=[], rotated=[])
    for key, (email, _uuid) in old_by_key.items():
        if key not in new_by_key:
            plan.steps[key] = [UserStep(email)]
            plan.removed.append(email)
    for key, (email, uuid_) in new_by_key.items():
        before = old_by_key.get(key)
        if before is None:
            plan.steps[key] = [UserStep(email, uuid_)]
            plan.added.append(email)
        elif before != (email, uuid_):
            plan.steps[key] = [UserStep(before[0]), UserStep(email, uuid_)]
            plan.rotated.append(email)
    return plan
