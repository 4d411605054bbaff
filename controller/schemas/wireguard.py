"""WireGuard servers and clients (seed 001's shapes): what the API takes and what it answers.

The bodies are the services' typed commands. Update bodies: a field left out keeps its value; a field that is a
NOT NULL column (name, port, lists, flags) can not be set to null (a 422 naming it, never a database error);
the nullable ones (addresses, endpoint_host, expires_at) can.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import uuid
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, Strict,
                      field_validator)

from controller.api import MAX_ID, BodyIntId, PageQuery

IFACE = r"^[A-Za-z0-9_.-]{1,15}$"
NAME = r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}$"
#: caps on lists a caller sends (a WireGuard config with more is not a real one)
MAX_DNS = 8
MAX_ALLOWED_IPS = 64

ServerStatus = Literal["running", "stopped"]
ClientStatus = Literal["active", "disabled"]

#: body scalars are what the schema says: 0 is not false, "51820" or 51820.0 not a port
Bool = Annotated[bool, Strict()]
Int = Annotated[int, Strict()]
#: an address with or without a prefix: IPv4 or IPv6 characters (the exact checks follow in the validators)
ADDRESS = r"^[0-9A-Fa-f:.]{2,45}(/[0-9]{1,3})?$"
# list items: length-bounded only, so an error names the list field (its validator says which item is wrong)
_Cidr = Annotated[str, Field(max_length=64)]
_Ip = Annotated[str, Field(max_length=45)]
_Key = Annotated[str, Field(max_length=64, description="base64 X25519 key (44 characters)")]


def _drop_null_defaults(schema: dict[str, Any]) -> None:
    """In the published schema of an update body, a non-nullable field has no ``default: null`` (it is
    optional, but null is not a value it takes)."""
    for prop in schema.get("properties", {}).values():
        if "default" in prop and prop["default"] is None and "anyOf" not in prop:
            del prop["default"]


class _Update(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_drop_null_defaults)

    def changes(self) -> dict[str, Any]:
        """The fields the caller sent (left-out ones are kept)."""
        return self.model_dump(exclude_unset=True)


# -- field checks -------------------------------------------------------------------------------------------

def _cidr_list(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    out = []
    for v in values:
        try:
            out.append(str(ipaddress.ip_network(v, strict=False)))
        except ValueError:
            raise ValueError(f"{v!r} is not a CIDR") from None
    return out


def _ip_list(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    try:
        return [str(ipaddress.ip_address(v)) for v in values]
    except ValueError as exc:
        raise ValueError(str(exc)) from None


def _interface(value: str | None, version: int) -> str | None:
    if value is None:
        return None
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an address with a prefix, e.g. 10.8.0.1/24") from None
    if iface.version != version:
        raise ValueError(f"must be an IPv{version} address")
    if iface.network.prefixlen >= (31 if version == 4 else 127):
        raise ValueError("the subnet is too small for clients")
    if iface.ip == iface.network.network_address:
        raise ValueError("use the server's own address in the subnet, e.g. 10.8.0.1/24, not the network address")
    return str(iface)


def _text_only(value: object) -> object:
    """A time is ISO 8601 text here (pydantic would also read a number as a Unix time)."""
    if not isinstance(value, (str, dt.datetime)):
        raise ValueError("must be an ISO 8601 date-time string")
    return value


def _utc(value: dt.datetime) -> dt.datetime:
    """In UTC, as stored; a time whose UTC form is outside years 1..9999 is refused here, not by the database."""
    try:
        return value.astimezone(dt.timezone.utc)
    except OverflowError:
        raise ValueError("out of range") from None


ExpiresAt = Annotated[AwareDatetime, BeforeValidator(_text_only), AfterValidator(_utc),
                      Field(description="ISO 8601 with a time zone; the client is disabled then")]


# -- servers ------------------------------------------------------------------------------------------------

class ServerBody(BaseModel):
    """A new WireGuard server (interface) on a node; its key pair is generated."""

    model_config = ConfigDict(extra="forbid")
    node_id: uuid.UUID
    name: str = Field(pattern=NAME)
    interface: str = Field(pattern=IFACE)
    listen_port: Int = Field(ge=1, le=65535)
    ipv4_address: str | None = Field(default=None, max_length=64, pattern=ADDRESS,
                                     description="the server's address with the subnet, e.g. 10.8.0.1/24")
    ipv6_address: str | None = Field(default=None, max_length=64, pattern=ADDRESS,
                                     description="e.g. fd00:8::1/64")
    dns_servers: list[_Ip] = Field(default=[], max_length=MAX_DNS)
    mtu: Int = Field(default=1420, ge=1280, le=9000)
    persistent_keepalive: Int = Field(default=25, ge=0, le=3600)
    allowed_ips: list[_Cidr] | None = Field(default=None, max_length=MAX_ALLOWED_IPS,
                                            description="what clients route through the tunnel; "
                                                        "default 0.0.0.0/0 and ::/0")
    nat: Bool = True
    #: peers may reach each other through the node (else the egress policy keeps them apart)
    peer_to_peer: Bool = False
    endpoint_host: str | None = Field(default=None, min_length=1, max_length=255,
                                      description="host clients dial; default: the node's public IP")
    auto_start: Bool = True
    description: str = Field(default="", max_length=1000)

    _v4 = field_validator("ipv4_address")(lambda cls, v: _interface(v, 4))
    _v6 = field_validator("ipv6_address")(lambda cls, v: _interface(v, 6))
    _dns = field_validator("dns_servers")(lambda cls, v: _ip_list(v))
    _allowed = field_validator("allowed_ips")(lambda cls, v: _cidr_list(v))


class ServerUpdate(_Update):
    """Changes to a server; the subnet only while it has no clients."""

    name: str = Field(default=None, pattern=NAME)
    interface: str = Field(default=None, pattern=IFACE)
    listen_port: Int = Field(default=None, ge=1, le=65535)
    ipv4_address: str | None = Field(default=None, max_length=64, pattern=ADDRESS)
    ipv6_address: str | None = Field(default=None, max_length=64, pattern=ADDRESS)
    dns_servers: list[_Ip] = Field(default=None, max_length=MAX_DNS)
    mtu: Int = Field(default=None, ge=1280, le=9000)
    persistent_keepalive: Int = Field(default=None, ge=0, le=3600)
    allowed_ips: list[_Cidr] = Field(default=None, max_length=MAX_ALLOWED_IPS)
    nat: Bool = None  # type: ignore[assignment]  # left out: kept; null: refused
    peer_to_peer: Bool = None  # type: ignore[assignment]
    endpoint_host: str | None = Field(default=None, min_length=1, max_length=255)
    auto_start: Bool = None  # type: ignore[assignment]
    description: str = Field(default=None, max_length=1000)

    _v4 = field_validator("ipv4_address")(lambda cls, v: _interface(v, 4))
    _v6 = field_validator("ipv6_address")(lambda cls, v: _interface(v, 6))
    _dns = field_validator("dns_servers")(lambda cls, v: _ip_list(v))
    _allowed = field_validator("allowed_ips")(lambda cls, v: _cidr_list(v))


class ServerQuery(PageQuery):
    node_id: uuid.UUID | None = None
    status: ServerStatus | None = None
    search: str | None = Field(default=None, min_length=1, max_length=200,
                               description="substring of the name, interface or description")


class ServerConfig(BaseModel):
    dns_servers: list[str]
    mtu: int
    persistent_keepalive: int
    allowed_ips: list[str]


class ServerOut(BaseModel):
    """A WireGuard server (its private key never leaves the controller but to its node)."""

    id: int
    node_id: str
    name: str
    interface: str
    listen_port: int
    ipv4_address: str | None
    ipv6_address: str | None
    public_key: str
    status: ServerStatus
    auto_start: bool
    nat: bool
    peer_to_peer: bool
    endpoint_host: str | None
    description: str
    created_at: str = Field(description="ISO 8601, UTC")
    updated_at: str = Field(description="ISO 8601, UTC")
    config: ServerConfig


class ServerListed(ServerOut):
    """A server in a list, or just created: with its number of clients."""

    clients_count: int


class ComponentStatus(BaseModel):
    """The node's last applied report for its WireGuard component."""

    name: str
    state: str
    error: str | None
    config_hash: str


class PeerStatus(BaseModel):
    id: int
    name: str
    public_key: str
    allowed_ips: str = Field(description="the peer's addresses, comma-separated")
    status: ClientStatus
    latest_handshake: str | None
    transfer_rx: int
    transfer_tx: int


class InterfaceStats(BaseModel):
    rx_bytes: int
    tx_bytes: int


class ServerStatusOut(BaseModel):
    id: int
    name: str
    status: ServerStatus
    node_id: str
    node_online: bool
    applied: bool = Field(description="the node has applied its latest desired state")
    component: ComponentStatus | None
    clients: list[PeerStatus]
    interface_stats: InterfaceStats


# -- clients ------------------------------------------------------------------------------------------------

class ClientBody(BaseModel):
    """A new peer: addresses auto-assigned (or given and checked), keys generated (or only its public key)."""

    model_config = ConfigDict(extra="forbid")
    server_id: BodyIntId
    name: str = Field(pattern=NAME)
    ipv4_address: str | None = Field(default=None, max_length=64, pattern=ADDRESS)
    ipv6_address: str | None = Field(default=None, max_length=64, pattern=ADDRESS)
    auto_assign_ip: Bool = True
    public_key: _Key | None = None
    private_key: _Key | None = None
    preshared_key: _Key | None = None
    use_preshared_key: Bool = True
    allowed_ips: list[_Cidr] | None = Field(default=None, max_length=MAX_ALLOWED_IPS)
    dns_servers: list[_Ip] | None = Field(default=None, max_length=MAX_DNS)
    persistent_keepalive: Int | None = Field(default=None, ge=0, le=3600)
    expires_at: ExpiresAt | None = None
    description: str = Field(default="", max_length=1000)
    owner_id: BodyIntId | None = Field(default=None, description="the account that owns the peer (a user "
                                                                 "account sees only what it owns)")

    _allowed = field_validator("allowed_ips")(lambda cls, v: _cidr_list(v))
    _dns = field_validator("dns_servers")(lambda cls, v: _ip_list(v))


class ClientUpdate(_Update):
    """Changes to a peer; a null address removes that address from the peer."""

    name: str = Field(default=None, pattern=NAME)
    ipv4_address: str | None = Field(default=None, max_length=64, pattern=ADDRESS)
    ipv6_address: str | None = Field(default=None, max_length=64, pattern=ADDRESS)
    allowed_ips: list[_Cidr] = Field(default=None, max_length=MAX_ALLOWED_IPS)
    dns_servers: list[_Ip] = Field(default=None, max_length=MAX_DNS)
    persistent_keepalive: Int = Field(default=None, ge=0, le=3600)
    expires_at: ExpiresAt | None = None
    status: ClientStatus = None  # type: ignore[assignment]
    description: str = Field(default=None, max_length=1000)
    owner_id: BodyIntId | None = Field(default=None, description="null: no owner")

    _allowed = field_validator("allowed_ips")(lambda cls, v: _cidr_list(v))
    _dns = field_validator("dns_servers")(lambda cls, v: _ip_list(v))


class ClientQuery(PageQuery):
    server_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    status: ClientStatus | None = None
    search: str | None = Field(default=None, min_length=1, max_length=200,
                               description="substring of the name, IPv4 address or public key")
    owner_id: int | None = Field(default=None, ge=1, le=MAX_ID, description="only the peers this account owns")


class ClientOut(BaseModel):
    id: int
    name: str
    server_id: int
    ipv4_address: str | None
    ipv6_address: str | None
    public_key: str
    private_key: str | None = Field(description="null when the peer brought its own key pair")
    preshared_key: str | None
    status: ClientStatus
    expires_at: str | None
    last_handshake: str | None
    bytes_received: int
    bytes_sent: int
    allowed_ips: list[str]
    dns_servers: list[str]
    persistent_keepalive: int
    description: str
    owner_id: int | None = Field(description="the account that owns the peer; null: none")
    created_at: str
    updated_at: str


class ClientWithConfig(ClientOut):
    config: str = Field(description="the wg-quick configuration text")
    qr_code: str = Field(description="the configuration as a PNG QR code data URL")
