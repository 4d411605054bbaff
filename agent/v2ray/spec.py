"""The desired V2Ray part as validated values (V2RaySpec), and what changing users means (plan_users).

Everything here is pure. Validation happens once, in spec_from_proto(); the rest of the driver works on
normalised values: listen "" is "0.0.0.0", UUIDs are in canonical lower-case form, log level "" is
"warning", core "" is "v2ray". V2Ray compares emails case-insensitively (it lower-cases them in its user
maps), so emails are keyed by `email_key()` wherever two of them could be confused.

Transport profiles (V2RayInbound.profile), each one protocol over one transport:

    "" / "vmess"            VMess AEAD over plain TCP (both mean the same config: the spec says "")
    "vless-reality-vision"  VLESS over REALITY with the XTLS Vision flow (Xray only): needs `reality`
    "vmess-ws-tls"          VMess over WebSocket over TLS (CDN fronting): needs `tls`, optional ws_path
    "vless-ws-tls"          VLESS over WebSocket over TLS: the same

VLESS has no encryption of its own, so it is never served without TLS or REALITY (DESIGN.md, "Nothing secret
in clear"); an inbound of profile "" and protocol "vless" only exists as read back from a config on disk
written before profiles (agent.v2ray.config.parse), never from a desired state. Settings of another profile
than the inbound's are refused rather than ignored, so a typo cannot silently serve something else.
The REALITY private key is a secret: no error, repr or log line carries it (errors name the field).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress
import posixpath
import re
import uuid
from typing import Mapping

from agent.egress import EgressSpec, egress_from_proto
from agent.v2ray.core import CORES, DEFAULT_CORE, Core, core_named
from protos import agent_pb2

PROTOCOLS = ("vmess", "vless")
REALITY_PROFILE = "vless-reality-vision"
WS_TLS_PROFILES = ("vmess-ws-tls", "vless-ws-tls")
#: Every profile a desired inbound may name, with its protocol. "" is "vmess" (plain TCP).
PROFILE_PROTOCOLS = {"vmess": "vmess", REALITY_PROFILE: "vless", "vmess-ws-tls": "vmess", "vless-ws-tls": "vless"}
#: The flow REALITY Vision clients (and so every user of such an inbound) use.
VISION_FLOW = "xtls-rprx-vision"
#: REALITY short ids: hex, even length, at most 16 characters (8 bytes); "" allows clients without one.
MAX_SHORT_ID = 16
#: Bounds on what a desired inbound may list (each entry ends up in the config V2Ray/Xray parses).
MAX_NAMES = 64
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
#: A 32-byte X25519 key as REALITY takes it: base64url without padding (43 characters).
_X25519_KEY_RE = re.compile(r"[A-Za-z0-9_-]{43}")
#: The same shape inside a text: what redact_credentials() hides (Xray echoes a key it refuses).
_KEY_IN_TEXT_RE = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")
_HEX_RE = re.compile(r"[0-9a-f]*")
#: A TLS server name: DNS labels (a leading "*." for a wildcard name), no spaces, ports or slashes.
_SERVER_NAME_RE = re.compile(r"(\*\.)?[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*\.?")


@dataclasses.dataclass(frozen=True)
class Reality:
    """The REALITY server of a vless-reality-vision inbound (agent_pb2.RealitySettings, validated)."""

    #: X25519, base64url without padding. A secret: left out of repr().
    private_key: str = dataclasses.field(repr=False)
    #: Lower-case hex, in the order given, no duplicates; "" allows clients without a short id.
    short_ids: tuple[str, ...]
    #: "host:port" of the site unauthenticated connections go to (and whose handshake REALITY borrows).
    dest: str
    #: Lower-case, in the order given, no duplicates; at least one.
    server_names: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Tls:
    """TLS of a *-ws-tls inbound: certificate and key files on the node (absolute paths)."""

    certificate_file: str
    key_file: str
    #: The name the certificate is for (clients' SNI and Host).
    server_name: str


@dataclasses.dataclass(frozen=True)
class Inbound:
    """One listening inbound; every user of the spec is a user of it."""

    tag: str
    protocol: str  # "vmess" | "vless"
    port: int
    listen: str  # an IP address, "0.0.0.0" for all
    #: "" (the protocol over plain TCP), "vless-reality-vision", "vmess-ws-tls" or "vless-ws-tls".
    profile: str = ""
    #: Set exactly for "vless-reality-vision".
    reality: Reality | None = None
    #: Set exactly for the *-ws-tls profiles.
    tls: Tls | None = None
    #: The WebSocket path of the *-ws-tls profiles ("/" when none was given); "" otherwise.
    ws_path: str = ""

    @property
    def flow(self) -> str:
        """The VLESS flow of this inbound's clients (hot-added users need it too); "" for none."""
        return VISION_FLOW if self.profile == REALITY_PROFILE else ""

    @property
    def transport(self) -> str:
        """How the inbound is described in events: "tcp", "reality", "ws+tls"."""
        return {"": "tcp", REALITY_PROFILE: "reality"}.get(self.profile, "ws+tls")


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
    #: The proxy core that runs it (agent.v2ray.core): "v2ray" or "xray".
    core: str = DEFAULT_CORE.name

    @property
    def structure(self) -> tuple:
        """What only a restart changes: switching cores too (one restart into the other binary)."""
        return self.core, self.inbounds, self.log_level, self.egress, self.access_log

    def with_users_of(self, other: V2RaySpec) -> V2RaySpec:
        """This structure with other's users (and other's non-structural settings): what runs when other's
        structure could not replace this one but its users were applied."""
        return dataclasses.replace(self, users=other.users, access_log_addresses=other.access_log_addresses)


def email_key(email: str) -> str:
    """How V2Ray tells users apart: emails compare case-insensitively."""
    return email.lower()


def redact_uuids(text: str) -> str:
    """Replace anything shaped like a UUID (a user credential) before text reaches a log or an error."""
    return _UUID_RE.sub("<uuid>", text)


def redact_credentials(text: str) -> str:
    """redact_uuids(), and anything shaped like a REALITY key (Xray echoes a private key it refuses)."""
    return _KEY_IN_TEXT_RE.sub("<key>", redact_uuids(text))


def canonical_uuid(value: str) -> str | None:
    """The UUID in 8-4-4-4-12 lower-case form, or None if value is not a UUID."""
    if _CANONICAL_UUID_RE.fullmatch(value):  # the usual case, 10x cheaper than uuid.UUID()
        return value
    try:
        return str(uuid.UUID(value.strip()))
    except (ValueError, AttributeError):
        return None


def _server_name(value: str, field: str) -> str:
    name = value.strip().lower()
    if not name or len(name) > 253 or not _SERVER_NAME_RE.fullmatch(name):
        raise ValueError(f"{field} {value!r} is not a server name")
    return name


def _x25519_key(value: str) -> bool:
    """Is value 32 bytes in base64url without padding, written canonically (the unused bits zero)?"""
    if not _X25519_KEY_RE.fullmatch(value):
        return False
    try:
        raw = base64.urlsafe_b64decode(value + "=")
    except (binascii.Error, ValueError):
        return False
    return len(raw) == 32 and base64.urlsafe_b64encode(raw).rstrip(b"=").decode() == value


def _host_port(value: str) -> bool:
    """Is value "host:port" (IPv6 hosts in brackets), port 1..65535?"""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535 or not host:
        return False
    if host.startswith("[") or host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return host.startswith("[") and host.endswith("]")
    return ":" not in host and not _CONTROL_RE.search(host) and " " not in host and "/" not in host


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _reality(name: str, item: agent_pb2.RealitySettings) -> Reality:
    field = f"{name}: reality"
    key = item.private_key.strip()
    if not key:
        raise ValueError(f"{field}.private_key is required")
    if not _x25519_key(key):  # never echo it: it is the node's secret
        raise ValueError(f"{field}.private_key is not an X25519 private key (32 bytes, base64url without padding)")
    if not item.short_ids:
        raise ValueError(f"{field}.short_ids: at least one is needed (\"\" allows clients without a short id)")
    if len(item.short_ids) > MAX_NAMES or len(item.server_names) > MAX_NAMES:
        raise ValueError(f"{field}: at most {MAX_NAMES} short_ids and server_names")
    short_ids = []
    for number, value in enumerate(item.short_ids):
        short_id = value.strip().lower()
        if not _HEX_RE.fullmatch(short_id):
            raise ValueError(f"{field}.short_ids[{number}] is not hex")
        if len(short_id) % 2 or len(short_id) > MAX_SHORT_ID:
            raise ValueError(f"{field}.short_ids[{number}] has {len(short_id)} hex digits "
                             f"(an even number up to {MAX_SHORT_ID})")
        short_ids.append(short_id)
    dest = item.dest.strip()
    if not _host_port(dest):
        raise ValueError(f"{field}.dest {item.dest!r} is not host:port")
    if not item.server_names:
        raise ValueError(f"{field}.server_names: at least one is needed (names dest serves)")
    names = [_server_name(value, f"{field}.server_names[{number}]") for number, value in enumerate(item.server_names)]
    return Reality(private_key=key, short_ids=_unique(short_ids), dest=dest, server_names=_unique(names))


def _absolute_file(value: str, field: str) -> str:
    path = value.strip()
    if not path:
        raise ValueError(f"{field} is required")
    if _CONTROL_RE.search(path) or not posixpath.isabs(path):
        raise ValueError(f"{field} {value!r} is not an absolute path")
    return path


def _tls(name: str, item: agent_pb2.TlsSettings) -> Tls:
    field = f"{name}: tls"
    return Tls(certificate_file=_absolute_file(item.certificate_file, f"{field}.certificate_file"),
               key_file=_absolute_file(item.key_file, f"{field}.key_file"),
               server_name=_server_name(item.server_name, f"{field}.server_name"))


def _ws_path(name: str, value: str) -> str:
    path = value.strip() or "/"
    if not path.startswith("/") or len(path) > 1024 or _CONTROL_RE.search(path) or " " in path:
        raise ValueError(f"{name}: ws_path {value!r} is not a URL path (it starts with \"/\", no spaces)")
    return path


def _profile_settings(name: str, profile: str, item: agent_pb2.V2RayInbound) -> dict:
    """The reality/tls/ws_path of an inbound of this (validated) profile; the other ones must be empty."""
    out: dict = {}
    if profile == REALITY_PROFILE:
        if not item.HasField("reality"):
            raise ValueError(f"{name}: profile {REALITY_PROFILE!r} needs reality settings")
        out["reality"] = _reality(name, item.reality)
    elif item.HasField("reality") and item.reality.ByteSize():
        raise ValueError(f"{name}: reality settings are only for profile {REALITY_PROFILE!r}")
    if profile in WS_TLS_PROFILES:
        if not item.HasField("tls"):
            raise ValueError(f"{name}: profile {profile!r} needs tls settings (certificate_file, key_file, "
                             "server_name)")
        out["tls"] = _tls(name, item.tls)
        out["ws_path"] = _ws_path(name, item.ws_path)
    else:
        if item.HasField("tls") and item.tls.ByteSize():
            raise ValueError(f"{name}: tls settings are only for profiles {' and '.join(WS_TLS_PROFILES)}")
        if item.ws_path.strip():
            raise ValueError(f"{name}: ws_path is only for profiles {' and '.join(WS_TLS_PROFILES)}")
    return out


def _inbound(index: int, item: agent_pb2.V2RayInbound, core: Core = DEFAULT_CORE) -> Inbound:
    tag = item.tag.strip()
    name = f"inbound {tag!r}" if tag else f"inbound #{index + 1}"
    if not tag:
        raise ValueError(f"{name} has no tag")
    if _CONTROL_RE.search(tag):
        raise ValueError(f"{name}: the tag contains control characters")
    if tag == RESERVED_TAG:
        raise ValueError(f"{name}: the tag {RESERVED_TAG!r} is reserved for the agent's API inbound")
    profile = item.profile.strip().lower()
    protocol = item.protocol.strip().lower()
    if profile:
        if profile not in PROFILE_PROTOCOLS:
            raise ValueError(f"{name}: profile {item.profile!r} is not supported "
                             f"(use {', '.join(PROFILE_PROTOCOLS)}, or \"\" for VMess over TCP)")
        if protocol and protocol != PROFILE_PROTOCOLS[profile]:
            raise ValueError(f"{name}: profile {profile!r} is {PROFILE_PROTOCOLS[profile]}, not protocol {protocol!r}")
        protocol = PROFILE_PROTOCOLS[profile]
    elif protocol not in PROTOCOLS:
        raise ValueError(f"{name}: protocol {item.protocol!r} is not supported (use vmess or vless)")
    elif protocol == "vless":
        raise ValueError(f"{name}: VLESS without TLS or REALITY is not served "
                         f"(use profile {REALITY_PROFILE!r} or 'vless-ws-tls')")
    else:
        profile = "vmess"
    if profile not in core.profiles:
        serving = " or ".join(c.title for c in CORES.values() if profile in c.profiles)
        raise ValueError(f"{name}: profile {profile!r} needs the {serving} core (this node's core is {core.name!r})")
    if not 1 <= item.port <= 65535:
        raise ValueError(f"{name}: port {item.port} is out of range 1..65535")
    listen = item.listen.strip()
    if listen:
        try:
            listen = ipaddress.ip_address(listen).compressed
        except ValueError:
            raise ValueError(f"{name}: listen {item.listen!r} is not an IP address (\"\" listens on all)") from None
    settings = _profile_settings(name, profile, item)
    # "vmess" renders exactly as "" always did: one value, so a config from before profiles compares equal.
    return Inbound(tag=tag, protocol=protocol, port=item.port, listen=listen or "0.0.0.0",
                   profile="" if profile == "vmess" else profile, **settings)


def spec_from_proto(part: agent_pb2.V2RayConfig) -> V2RaySpec:
    """Validate the desired part and normalise it. Raises ValueError naming the core, inbound or user at fault."""
    core = core_named(part.core)
    inbounds: list[Inbound] = []
    tags: dict[str, Inbound] = {}
    ports: dict[int, Inbound] = {}
    for index, item in enumerate(part.inbounds):
        inbound = _inbound(index, item, core)
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
                     access_log=part.access_log, access_log_addresses=part.access_log_addresses, core=core.name)


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
