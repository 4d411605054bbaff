"""What an interface should look like (InterfaceSpec, validated), what it looks like (DeviceState), and
the smallest change from one to the other (plan_update)."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import ipaddress
import re
from typing import Iterable

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from agent.egress import EgressSpec, egress_from_proto
from protos import agent_pb2

KEY_BYTES = 32
ZERO_KEY_HEX = "0" * 64
DEFAULT_MTU = 1420
MIN_MTU = 576
MIN_MTU_V6 = 1280
MAX_MTU = 65535
MAX_KEEPALIVE = 65535
#: Linux interface names: at most 15 bytes (IFNAMSIZ - 1). The proto allows letters, digits, "_", "-", ".".
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


# -- keys --------------------------------------------------------------------------------------------------


def parse_key(value: str, what: str) -> bytes:
    """The 32 raw bytes of a base64 WireGuard key; ValueError naming `what` otherwise."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not valid base64") from None
    if len(raw) != KEY_BYTES:
        raise ValueError(f"{what} must be {KEY_BYTES} bytes (44 base64 characters), got {len(raw)} bytes")
    return raw


def key_to_hex(b64: str) -> str:
    return base64.b64decode(b64).hex()


def key_from_hex(hex_key: str) -> str:
    """Base64 of a hex key (UAPI form); "" for the all-zero key (UAPI's "unset")."""
    if not hex_key or hex_key == ZERO_KEY_HEX:
        return ""
    return base64.b64encode(bytes.fromhex(hex_key)).decode()


def public_key_of(private_b64: str) -> str:
    raw = X25519PrivateKey.from_private_bytes(base64.b64decode(private_b64)).public_key()
    return base64.b64encode(raw.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def short_key(b64: str) -> str:
    return b64[:8] + "…"


# -- specs -------------------------------------------------------------------------------------------------


def _network(value: str, what: str) -> str:
    try:
        return _normalise_network(value.strip())
    except ValueError:
        raise ValueError(f"{what}: {value!r} is not a CIDR") from None


def _interface_address(value: str, what: str) -> str:
    if "/" not in value:
        raise ValueError(f"{what}: {value!r} needs a prefix length, e.g. 10.8.0.1/24")
    try:
        return str(ipaddress.ip_interface(value.strip()))
    except ValueError:
        raise ValueError(f"{what}: {value!r} is not an address in CIDR form") from None


@dataclasses.dataclass(frozen=True)
class PeerSpec:
    public_key: str
    preshared_key: str = ""
    #: Normalised CIDRs (host bits cleared, as WireGuard stores them), sorted.
    allowed_ips: tuple[str, ...] = ()
    persistent_keepalive: int = 0
    peer_id: str = ""

    def device_view(self) -> tuple:
        """What the device stores for this peer (peer_id lives only in the agent)."""
        return self.preshared_key, self.allowed_ips, self.persistent_keepalive


@dataclasses.dataclass(frozen=True)
class InterfaceSpec:
    name: str
    private_key: str
    listen_port: int = 0
    #: Normalised interface addresses ("10.8.0.1/24").
    addresses: tuple[str, ...] = ()
    mtu: int = DEFAULT_MTU
    nat: bool = False
    #: By public key, in the order given.
    peers: dict[str, PeerSpec] = dataclasses.field(default_factory=dict)
    #: Peers may reach each other: the interface's own subnets are exempt from the egress policy.
    peer_to_peer: bool = False
    #: What peers' forwarded traffic may not reach (the node's, shared by its interfaces).
    egress: EgressSpec = EgressSpec()

    @property
    def subnets(self) -> list[str]:
        """The networks of the interface's addresses (what NAT masquerades), without duplicates."""
        seen: dict[str, None] = {}
        for address in self.addresses:
            seen[str(ipaddress.ip_interface(address).network)] = None
        return list(seen)

    @property
    def has_ipv6(self) -> bool:
        return any(ipaddress.ip_interface(a).version == 6 for a in self.addresses)


def check_name(name: str) -> None:
    if not NAME_RE.match(name) or name in (".", ".."):
        raise ValueError(
            f"interface name {name!r} is invalid: 1-15 characters among letters, digits, '_', '-', '.'"
        )


def interface_from_proto(msg: agent_pb2.WireGuardInterface) -> InterfaceSpec:
    """A validated InterfaceSpec; ValueError with the interface's name in the message otherwise."""
    check_name(msg.name)
    where = f"interface {msg.name}"
    if not msg.private_key:
        raise ValueError(f"{where}: private_key is required")
    private = base64.b64encode(parse_key(msg.private_key, f"{where}: private_key")).decode()
    own_public = public_key_of(private)
    if not 0 <= msg.listen_port <= 65535:
        raise ValueError(f"{where}: listen_port must be 0..65535, got {msg.listen_port}")
    addresses: list[str] = []
    for value in msg.addresses:
        address = _interface_address(value, f"{where}: address")
        if address in addresses:
            raise ValueError(f"{where}: address {address} is listed twice")
        addresses.append(address)
    has_v6 = any(ipaddress.ip_interface(a).version == 6 for a in addresses)
    mtu = msg.mtu or DEFAULT_MTU
    low = MIN_MTU_V6 if has_v6 else MIN_MTU
    if not low <= mtu <= MAX_MTU:
        raise ValueError(f"{where}: mtu must be {low}..{MAX_MTU}, got {mtu}")
    peers: dict[str, PeerSpec] = {}
    routed: dict[str, str] = {}
    for index, peer in enumerate(msg.peers):
        label = f"{where}: peer {peer.peer_id or index}"
        public = base64.b64encode(parse_key(peer.public_key, f"{label}: public_key")).decode()
        if public in peers:
            raise ValueError(f"{where}: public key {public} is listed for two peers")
        if public == own_public:
            raise ValueError(f"{label}: public key is the interface's own public key")
        psk = ""
        if peer.preshared_key:
            psk = base64.b64encode(parse_key(peer.preshared_key, f"{label}: preshared_key")).decode()
        if not 0 <= peer.persistent_keepalive <= MAX_KEEPALIVE:
            raise ValueError(f"{label}: persistent_keepalive must be 0..{MAX_KEEPALIVE}")
        allowed: list[str] = []
        for value in peer.allowed_ips:
            network = _network(value, f"{label}: allowed_ips")
            if network in routed and routed[network] != public:
                raise ValueError(f"{where}: allowed IP {network} is routed to two peers")
            routed[network] = public
            if network not in allowed:
                allowed.append(network)
        peers[public] = PeerSpec(public, psk, tuple(sorted(allowed)), peer.persistent_keepalive, peer.peer_id)
    return InterfaceSpec(msg.name, private, msg.listen_port, tuple(addresses), mtu, msg.nat, peers,
                         peer_to_peer=msg.peer_to_peer)


def config_from_proto(config: agent_pb2.WireGuardConfig) -> dict[str, InterfaceSpec]:
    """Every interface of the config, validated, by name. Raises ValueError before anything is applied."""
    specs: dict[str, InterfaceSpec] = {}
    policy = egress_from_proto(config.egress)
    ports: dict[int, str] = {}
    owners: dict[str, str] = {}  # address (without prefix) -> interface
    publics: dict[str, str] = {}
    for msg in config.interfaces:
        spec = dataclasses.replace(interface_from_proto(msg), egress=policy)
        if spec.name in specs:
            raise ValueError(f"interface {spec.name} is listed twice")
        if spec.listen_port:
            if spec.listen_port in ports:
                raise ValueError(
                    f"listen port {spec.listen_port} is used by both {ports[spec.listen_port]} and {spec.name}"
                )
            ports[spec.listen_port] = spec.name
        own = public_key_of(spec.private_key)
        if own in publics:
            raise ValueError(f"interfaces {publics[own]} and {spec.name} have the same private key")
        publics[own] = spec.name
        for address in spec.addresses:
            ip = str(ipaddress.ip_interface(address).ip)
            if ip in owners:
                raise ValueError(f"address {ip} is on both {owners[ip]} and {spec.name}")
            owners[ip] = spec.name
        specs[spec.name] = spec
    return specs


# -- the device as read back -------------------------------------------------------------------------------


@dataclasses.dataclass
class PeerState:
    public_key: str
    preshared_key: str = ""
    allowed_ips: tuple[str, ...] = ()
    persistent_keepalive: int = 0
    endpoint: str = ""
    rx_bytes: int = 0
    tx_bytes: int = 0
    #: Unix milliseconds of the latest handshake; 0: never.
    last_handshake_ms: int = 0

    def device_view(self) -> tuple:
        return self.preshared_key, self.allowed_ips, self.persistent_keepalive


@dataclasses.dataclass
class DeviceState:
    private_key: str = ""
    listen_port: int = 0
    peers: dict[str, PeerState] = dataclasses.field(default_factory=dict)


# -- a change ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class PeerUpdate:
    public_key: str
    remove: bool = False
    #: None: leave as is; "": clear.
    preshared_key: str | None = None
    endpoint: str | None = None
    persistent_keepalive: int | None = None
    #: None: leave as is; a tuple replaces the peer's allowed IPs.
    allowed_ips: tuple[str, ...] | None = None


@dataclasses.dataclass
class DeviceUpdate:
    private_key: str | None = None
    listen_port: int | None = None
    peers: list[PeerUpdate] = dataclasses.field(default_factory=list)

    def __bool__(self) -> bool:
        return self.private_key is not None or self.listen_port is not None or bool(self.peers)

    @property
    def removed(self) -> list[str]:
        return [p.public_key for p in self.peers if p.remove]


def plan_update(
    current: DeviceState, spec: InterfaceSpec, endpoints: dict[str, str] | None = None
) -> DeviceUpdate:
    """The UAPI-style change that turns `current` into `spec`, touching only peers that differ.

    Unchanged peers are not mentioned at all, so their sessions and handshakes are untouched. Removals come
    first so an allowed IP moving from a removed peer to another one ends up on the new owner.
    `endpoints` (public key -> "host:port") restores learned endpoints when rolling back.
    """
    update = DeviceUpdate()
    if spec.private_key != current.private_key:
        update.private_key = spec.private_key
    if spec.listen_port and spec.listen_port != current.listen_port:
        update.listen_port = spec.listen_port
    for public in current.peers:
        if public not in spec.peers:
            update.peers.append(PeerUpdate(public, remove=True))
    endpoints = endpoints or {}
    for public, want in spec.peers.items():
        have = current.peers.get(public)
        endpoint = endpoints.get(public) or None
        if have is None:
            update.peers.append(
                PeerUpdate(
                    public,
                    preshared_key=want.preshared_key or None,
                    endpoint=endpoint,
                    persistent_keepalive=want.persistent_keepalive,
                    allowed_ips=want.allowed_ips,
                )
            )
            continue
        if have.device_view() == want.device_view() and (endpoint is None or endpoint == have.endpoint):
            continue
        change = PeerUpdate(public)
        if have.preshared_key != want.preshared_key:
            change.preshared_key = want.preshared_key
        if have.persistent_keepalive != want.persistent_keepalive:
            change.persistent_keepalive = want.persistent_keepalive
        if have.allowed_ips != want.allowed_ips:
            change.allowed_ips = want.allowed_ips
        if endpoint is not None and endpoint != have.endpoint:
            change.endpoint = endpoint
        update.peers.append(change)
    return update


@functools.lru_cache(maxsize=1 << 16)
def _normalise_network(value: str) -> str:
    return str(ipaddress.ip_network(value, strict=False))


def normalise_networks(values: Iterable[str]) -> tuple[str, ...]:
    """Sorted, de-duplicated, in Python's canonical form (so device and spec compare equal)."""
    return tuple(sorted({_normalise_network(v) for v in values}))
