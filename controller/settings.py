"""Controller settings: a YAML file whose sections follow seed 000, overridden by environment variables.

The file is read into declared models, one per section (``ServerSection``, ``V2raySection``, ...), that refuse
unknown keys. Their values fill the flat, frozen ``Settings`` the controller reads (``settings.v2ray_port``);
``Settings`` declares each value's type, bounds and default once and checks them again when it is built
directly by keyword (as tests do). Every error is a ``SettingsError`` that names the setting by its path in
the file (``server.tls.cert_file``) and, when the value came from the environment, the variable.

Sections: seed 000's ``server``, ``database``, ``aws``, ``v2ray``, ``logging``, ``scheduler``, plus vpnfleet's
own ``grpc``, ``local``, ``enrollment``, ``telemetry``, ``egress``, ``diagnostics``, ``limits``, ``audit``,
``pki`` and ``nodes``. Every key is optional: an empty or missing file gives a working controller on SQLite
with the ``local`` provider. ``docs/settings.md`` is rendered from these models: ``python -m controller.settings``.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, NamedTuple

import annotated_types
import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic.dataclasses import dataclass
from pydantic.fields import FieldInfo

from controller import reality

#: Root of the source tree (for the cloud-init template shipped beside the packages).
REPO_ROOT = Path(__file__).resolve().parent.parent

#: what an enrollment token lives beyond instance_wait_timeout (boot, package install, clock skew)
ENROLLMENT_TTL_MARGIN = 120.0

#: The proxy cores a node can run (controller.services.desired_state); new nodes get Settings.v2ray_core.
CORES = ("xray", "v2ray")

GiB = 1 << 30
_DAY = 86400.0


class SettingsError(ValueError):
    """The settings file or environment holds a bad value; the message names it."""


# -- value types: the bounds and formats, declared once and shared by the file's sections and Settings -------


class Kind(NamedTuple):
    """What a string setting holds, for the reference (pydantic ignores this metadata)."""

    text: str


def _not_bool(value: Any) -> Any:
    # pydantic's lax mode reads true as 1: a port or an interval of `true` is a mistake, not a number
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    return value


def _split(value: Any) -> Any:
    """A list, or one comma-separated string of items (environment variables hold strings)."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if not isinstance(value, (list, tuple)):
        raise ValueError("must be a list (or a comma-separated string)")
    return value


def _cidr(value: Any) -> str:
    try:
        return ipaddress.ip_network(str(value).strip(), strict=False).with_prefixlen
    except ValueError:
        raise ValueError(f"{value!r} is not a CIDR") from None


#: What egress.allowed_cidrs may never open: the node itself.
_NODE_ITSELF = tuple(ipaddress.ip_network(n) for n in ("0.0.0.0/8", "127.0.0.0/8", "::1/128", "::/128"))


def _not_node_itself(cidrs: tuple[str, ...]) -> tuple[str, ...]:
    for cidr in cidrs:
        network = ipaddress.ip_network(cidr)
        if any(network.version == n.version and network.overlaps(n) for n in _NODE_ITSELF):
            raise ValueError(f"{cidr} would open the node itself (loopback or 0.0.0.0/8)")
    return cidrs


def _server_names(value: Any) -> tuple[str, ...]:
    return tuple(reality.check_server_names(_split(value)))


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _listen_addr(value: str) -> str:
    """http_addr: host or host:port (the HTTP server's port may be left to the default)."""
    host, _ = split_hostport(value)
    if not host:
        raise ValueError(f"must be host:port, got {value!r}")
    return value


def _grpc_addr(value: str) -> str:
    """grpc.addr / grpc.enroll_addr: host:port, or unix:/path for a socket behind a local proxy."""
    if is_unix(value):
        return value
    host, port = split_hostport(value)
    if not host or port == 0:
        raise ValueError(f"must be host:port (or unix:/path), got {value!r}")
    return value


def _advertise_addr(value: str) -> str:
    split_hostport(value)  # a bad port is an error now, not when the first agent is told where to dial
    return value


def _http_url(value: str) -> str:
    if value and (not value.startswith(("https://", "http://")) or any(c.isspace() for c in value)):
        raise ValueError(f"must be an http(s) URL, got {value!r}")
    return value


def _database_url(value: str) -> str:
    if value:
        from sqlalchemy.engine import make_url  # only when set: parsing is the check
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(value)
        except (ArgumentError, ValueError):  # never echoed: the URL may hold a password
            raise ValueError("is not a database URL (dialect+driver://user:password@host/db)") from None
    return value


def _local_path(value: str) -> str:
    if any(c in value for c in "\x00\n\r"):
        raise ValueError("a file name may not hold NUL or line breaks")
    return value


def _node_path(value: str) -> str:
    if not value.startswith("/") or any(c in value for c in "\x00\n\r"):
        raise ValueError(f"must be an absolute path on the nodes, got {value!r}")
    return value


def _tls_address(value: str) -> str:
    """v2ray.tls.address: an IP address or a DNS name ("" : the node's own address)."""
    value = value.strip()
    if not value:
        return value
    try:
        ipaddress.ip_address(value.strip("[]"))
        return value
    except ValueError:
        return reality.check_server_name(value)


def _optional_dest(value: str) -> str:
    return reality.check_dest(value) if value else ""


def _optional_names(value: Any) -> tuple[str, ...]:
    return () if value in (None, "", [], ()) else _server_names(value)


def _sha256(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError("must be the binary's SHA-256 (64 hex digits)")
    return value


def _version(value: str) -> str:
    if not re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", value):
        raise ValueError("must be x.y.z, e.g. 26.3.27")
    return value


def _region_code(code: str) -> str:
    if code == "local":
        raise ValueError("'local' is reserved for the local provider")
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", code):
        raise ValueError(f"region code {code!r} must be lower-case letters, digits and hyphens")
    return code


Port = Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=65535)]
Seconds = Annotated[float, BeforeValidator(_not_bool), Field(gt=0)]
Count = Annotated[int, BeforeValidator(_not_bool), Field(gt=0)]
Days = Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=36500)]
Cidrs = Annotated[tuple[Annotated[str, BeforeValidator(_cidr)], ...], BeforeValidator(_split), Kind("list of CIDRs")]
AllowedCidrs = Annotated[Cidrs, AfterValidator(_not_node_itself)]
ServerNames = Annotated[tuple[str, ...], BeforeValidator(_server_names), Kind("list of host names")]
RealityDest = Annotated[str, AfterValidator(reality.check_dest), Kind("host:port")]
ListenAddr = Annotated[str, AfterValidator(_listen_addr), Kind("host[:port]")]
GrpcAddr = Annotated[str, AfterValidator(_grpc_addr), Kind("host:port or unix:/path")]
AdvertiseAddr = Annotated[str, AfterValidator(_advertise_addr), Kind("host[:port]")]
HttpUrl = Annotated[str, AfterValidator(_http_url), Kind("http(s) URL")]
DatabaseUrl = Annotated[str, AfterValidator(_database_url), Kind("SQLAlchemy URL")]
LocalPath = Annotated[str, AfterValidator(_local_path), Kind("file")]
NodePath = Annotated[str, AfterValidator(_node_path), Kind("absolute path on the nodes")]
LogLevel = Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lower)]
Core = Annotated[Literal[CORES], BeforeValidator(_lower)]  # type: ignore[valid-type]
# the edge's limits (issue 10): positive, and bounded so a typo cannot switch a limit off
BodyBytes = Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=GiB)]
JsonDepth = Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=1000)]
Timeout = Annotated[float, BeforeValidator(_not_bool), Field(gt=0, le=3600)]
Window = Annotated[float, BeforeValidator(_not_bool), Field(gt=0, le=_DAY)]
Connections = Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=1_000_000)]
Failures = Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=1_000_000)]
CertDays = Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=825)]  # 825: the CA/B ceiling clients enforce
NodeQuota = Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=10_000)]
TokenTtl = Annotated[float, BeforeValidator(_not_bool), Field(ge=0, le=_DAY)]  # 0: derived (Settings.token_ttl)

_FORBID = ConfigDict(extra="forbid")


# -- the values the controller reads --------------------------------------------------------------------------


@dataclass(frozen=True, config=_FORBID)
class RegionSettings:
    """One region nodes can be launched in."""

    code: str
    name: str
    provider: str  # "ec2" or "local"
    template_id: str = ""  # EC2 launch template id (ec2 only)
    instance_type: str = ""  # overrides the launch template's type when set
    ami_id: str = ""  # overrides the launch template's image when set
    #: REALITY target site of the region's nodes ("" / (): the fleet's, v2ray.reality.*)
    reality_dest: Annotated[str, AfterValidator(_optional_dest)] = ""
    reality_server_names: Annotated[tuple[str, ...], BeforeValidator(_optional_names)] = ()


@dataclass(frozen=True, config=_FORBID)
class TlsSettings:
    """v2ray.tls: a domain with its certificate on every node, for the WebSocket+TLS profiles (CDN fronting).
    The files are provisioned outside vpnfleet (ACME or otherwise); the paths are on the nodes."""

    domain: Annotated[str, AfterValidator(reality.check_server_name), Kind("host name")] = Field(
        description="the name the certificate is for (the SNI subscribers send)")
    certificate_file: NodePath = Field(description="the certificate chain (PEM) on every node")
    key_file: NodePath = Field(description="its private key (PEM) on every node")
    vmess_port: Port = Field(8443, description="port of the vmess-ws-tls inbound (one a CDN proxies)")
    vless_port: Port = Field(2053, description="port of the vless-ws-tls inbound (8443, 2053, 2083, ...)")
    address: Annotated[str, AfterValidator(_tls_address), Kind("address or host name")] = Field(
        "", description="what subscribers dial for these profiles: \"\" the node's own address, or a CDN's name")

    @model_validator(mode="after")
    def _distinct_ports(self) -> TlsSettings:
        if self.vmess_port == self.vless_port:
            raise ValueError("vmess_port and vless_port must differ")
        return self


@dataclass(frozen=True, config=_FORBID)
class XrayRelease:
    """The Xray binary nodes download from elsewhere than the controller, checked against its sha256."""

    url: HttpUrl = Field(description="http(s) URL of the bare linux binary (a mirror of the pinned release)")
    sha256: Annotated[str, BeforeValidator(_lower), AfterValidator(_sha256), Kind("64 hex digits")] = Field(
        description="the binary's SHA-256")
    version: Annotated[str, AfterValidator(_version), Kind("x.y.z")] = Field(description="its Xray version")
    arch: Literal["amd64", "arm64"] = Field("amd64", description="the nodes' architecture")

    @property
    def filename(self) -> str:
        return f"xray-{self.version}-linux-{self.arch}"


@dataclass(frozen=True, config=_FORBID)
class Settings:
    """The controller's settings, flat. Each value's YAML key is in the section models below."""

    data_dir: Path = Path("data")
    http_addr: ListenAddr = "127.0.0.1:8080"
    #: mutual-TLS endpoint agents stream on (Agent.Connect)
    grpc_addr: GrpcAddr = "127.0.0.1:50051"
    #: server-TLS endpoint agents enroll on (Enrollment.Enroll); gRPC cannot ask for client
    #: certificates only for some calls, so enrollment has its own port.
    enroll_addr: GrpcAddr = "127.0.0.1:50052"
    #: host (or host:port) agents dial; the ports of grpc_addr / enroll_addr are used when no port is given
    advertise_addr: AdvertiseAddr = ""
    #: URL nodes download the agent package from; default derived from http_addr
    public_url: HttpUrl = ""
    database_url: DatabaseUrl = Field("", repr=False)  # may hold a password
    aws_access_key: str = Field("", repr=False)
    aws_secret_key: str = Field("", repr=False)
    #: boto3 endpoint override (moto in tests, or a VPC endpoint)
    aws_endpoint_url: HttpUrl = ""
    regions: tuple[RegionSettings, ...] = ()
    local_enabled: bool = True
    #: run V2Ray/Xray on the nodes (VMess on v2ray_port, VLESS+REALITY on v2ray_vless_port on Xray)
    v2ray_enabled: bool = True
    v2ray_port: Port = 11994
    v2ray_vless_port: Port = 11995
    #: the proxy core of new nodes: "xray" (VLESS+REALITY+Vision and VMess) or "v2ray" (VMess only)
    v2ray_core: Core = "xray"
    #: REALITY's target site (the handshake it borrows) and the names clients may ask for; per region in
    #: aws.regions.<code>.reality_dest / reality_server_names, per node through the API
    reality_dest: RealityDest = reality.DEFAULT_DEST
    reality_server_names: ServerNames = reality.DEFAULT_SERVER_NAMES
    #: WebSocket+TLS profiles (vmess-ws-tls, vless-ws-tls) on every node: only when configured
    v2ray_tls: TlsSettings | None = None
    #: where nodes download Xray instead of the controller; None: the controller serves its own (core_bundle)
    xray_release: XrayRelease | None = None
    #: a V2Ray config on this machine whose outbounds follow the running nodes (seed 000's local relay)
    v2ray_local_config_path: LocalPath = ""
    #: run after the local relay config changed (no shell), e.g. "systemctl restart v2ray"
    v2ray_reload_command: str = ""
    v2ray_binary: str = "v2ray"
    #: seconds between checks for expired and over-limit subscribers (seed 004's deactivate_expired)
    client_check_interval: Seconds = 5.0
    #: hours a subscriber's app waits between subscription refreshes (profile-update-interval header)
    subscription_update_hours: Count = 12
    log_level: LogLevel = "info"
    log_file: LocalPath = ""
    instance_sync_interval: Seconds = 60.0
    instance_wait_timeout: Seconds = 300.0
    #: seconds an enrollment token lives; 0 (the default): instance_wait_timeout plus ENROLLMENT_TTL_MARGIN
    enrollment_token_ttl: TokenTtl = 0.0
    heartbeat_interval: Count = 10
    #: a node is offline after this many missed heartbeats plus offline_grace seconds
    offline_after_missed: Count = 3
    offline_grace: Seconds = 5.0
    metrics_interval: Count = 10
    metrics_retention_days: Count = 7
    logs_per_node: Count = 2000
    #: a node's log line longer than this (bytes of UTF-8) is cut, with a marker saying so
    log_line_max_bytes: Count = 8192
    #: lines per second a node may stream (burst: 10 s worth); beyond it lines are dropped and counted
    log_lines_per_second: Count = 200
    #: the fastest link a node may have: a batch reporting more bytes than this carries in its period is refused
    telemetry_max_link_mbps: Count = 100_000
    #: samples stamped further ahead of the controller's clock than this are refused
    telemetry_max_clock_skew: Seconds = 300.0
    max_concurrent_handshakes: Count = 64
    #: destinations subscribers may not reach, besides the agent's built-in set (loopback, private, ...)
    egress_blocked_cidrs: Cidrs = ()
    #: exceptions to the blocked set (never loopback or 0.0.0.0/8: the node itself stays out of reach)
    egress_allowed_cidrs: AllowedCidrs = ()
    egress_block_bittorrent: bool = False
    #: V2Ray's access log on the nodes (every connection), for debugging; addresses masked unless _addresses
    v2ray_access_log: bool = False
    v2ray_access_log_addresses: bool = False
    #: tcping may probe loopback, private, link-local and metadata targets from the node
    diagnostics_allow_private_targets: bool = False
    cloud_init_template: Path = REPO_ROOT / "cloud-init" / "user-data.yaml"

    # -- the controller's edge (issue 10) -------------------------------------------------------------------
    #: server.tls.enabled: the REST API speaks HTTPS only. With no cert_file/key_file, the controller issues its
    #: own certificate from its CA (DATA_DIR/pki/ca.crt is what clients trust) and prints its fingerprint.
    tls_enabled: bool = False  # flipped to True once main.py serves TLS (issue 10, item 1)
    tls_cert_file: LocalPath = ""
    tls_key_file: LocalPath = ""
    #: server.allow_insecure_public_url: EC2 regions start with an http:// public_url (a TLS proxy elsewhere)
    allow_insecure_public_url: bool = False
    #: limits.*: bounded requests
    max_body_bytes: BodyBytes = 1024 * 1024
    max_json_depth: JsonDepth = 32
    #: seconds a client has to send a request's headers (slowloris), and an idle keep-alive connection lives
    header_timeout: Timeout = 10.0
    idle_timeout: Timeout = 5.0
    max_connections: Connections = 1000
    #: failed authentications a source address may make per auth_failure_window seconds before 429s
    auth_failures_per_window: Failures = 20
    auth_failure_window: Window = 60.0
    #: audit.retention_days: operations older than this are pruned by the schedule
    audit_retention_days: Days = 365
    #: pki.agent_cert_days: lifetime of agent certificates (renewed by the agent well before expiry)
    agent_cert_days: CertDays = 90
    #: nodes.max_per_region / nodes.creations_per_minute: a bound on what one key can launch
    max_nodes_per_region: NodeQuota = 100
    node_creations_per_minute: NodeQuota = 10

    # -- checks across settings (messages name the keys of the file) --------------------------------------
    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.v2ray_port == self.v2ray_vless_port:
            raise ValueError("v2ray.port (VMess) and v2ray.vless_port must differ")
        tls = self.v2ray_tls
        if tls is not None and {tls.vmess_port, tls.vless_port} & {self.v2ray_port, self.v2ray_vless_port}:
            raise ValueError("v2ray.tls.vmess_port / vless_port must differ from v2ray.port and v2ray.vless_port")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("server.tls.cert_file and server.tls.key_file go together: set both or neither")
        try:
            reality.check_target(self.reality_dest, list(self.reality_server_names))
            for region in self.regions:
                if region.reality_dest or region.reality_server_names:
                    dest, names = self.reality_target(region.code)
                    reality.check_target(dest, list(names))
        except ValueError as exc:
            raise ValueError(f"v2ray.reality / aws.regions.*.reality_*: {exc}") from None
        return self

    # -- derived values -----------------------------------------------------------------------------------
    @property
    def token_ttl(self) -> float:
        """Seconds an enrollment token lives: a machine needs minutes, not the hour a sniffer could use."""
        return self.enrollment_token_ttl or self.instance_wait_timeout + ENROLLMENT_TTL_MARGIN

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'vpnfleet.db'}"

    @property
    def http_url(self) -> str:
        scheme = "https" if self.tls_enabled else "http"
        return self.public_url.rstrip("/") or f"{scheme}://{self.http_addr}"

    @property
    def advertised_grpc(self) -> str:
        """The mutual-TLS address agents dial: advertise_addr ("host" or "host:port") or grpc_addr."""
        if is_unix(self.grpc_addr):
            return self.grpc_addr
        host, port = split_hostport(self.grpc_addr)
        adv_host, adv_port = split_hostport(self.advertise_addr, default_port=port) if self.advertise_addr else (host, port)
        return join_hostport(_dialable(adv_host), adv_port)

    @property
    def advertised_enroll(self) -> str:
        """The enrollment address agents dial: the advertised host with enroll_addr's port."""
        if is_unix(self.enroll_addr):
            return self.enroll_addr
        host, port = split_hostport(self.enroll_addr)
        adv_host = split_hostport(self.advertise_addr)[0] if self.advertise_addr else host
        return join_hostport(_dialable(adv_host), port)

    def region(self, code: str) -> RegionSettings | None:
        return next((r for r in self.all_regions() if r.code == code), None)

    def all_regions(self) -> tuple[RegionSettings, ...]:
        local = (RegionSettings(code="local", name="Local", provider="local"),) if self.local_enabled else ()
        return local + self.regions

    def reality_target(self, region: str) -> tuple[str, tuple[str, ...]]:
        """(dest, server names) of a region's nodes: the region's own where set, else the fleet's."""
        spec = self.region(region)
        return ((spec.reality_dest if spec and spec.reality_dest else self.reality_dest),
                (spec.reality_server_names if spec and spec.reality_server_names else self.reality_server_names))


def is_unix(addr: str) -> bool:
    """gRPC addresses may be unix sockets ("unix:/run/vpnfleet/grpc.sock"), e.g. behind a local proxy."""
    return addr.startswith("unix:")


def split_hostport(addr: str, default_port: int = 0) -> tuple[str, int]:
    """Split "host:port" / "[v6]:port" / "host"; raises SettingsError on a bad port."""
    addr = addr.strip()
    if addr.startswith("["):
        host, _, rest = addr[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif addr.count(":") == 1:
        host, port_text = addr.split(":")
    else:
        host, port_text = addr, ""
    if not port_text:
        return host, default_port
    if not port_text.isascii() or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise SettingsError(f"bad port in address {addr!r}")
    return host, int(port_text)


def _dialable(host: str) -> str:
    """A wildcard listen host is not something to dial: use loopback instead."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def join_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- the file: one model per section --------------------------------------------------------------------------
# A key left out (or null) leaves its Settings value at the default, so the defaults live in Settings alone.


def to(setting: str, doc: str) -> Any:
    """A key of the file that sets ``Settings.<setting>``."""
    return Field(None, description=doc, json_schema_extra={"setting": setting})


def _blank_is_unset(value: Any) -> Any:
    """v2ray.reality.*: "" or [] means the built-in default, as it always has."""
    return None if value in ("", [], ()) else value


class Section(BaseModel):
    """A mapping of the file: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def settings_values(self) -> dict[str, Any]:
        """{Settings field: value} of the keys this section (and the sections in it) set."""
        out: dict[str, Any] = {}
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if isinstance(value, Section):
                out.update(value.settings_values())
            elif value is not None and (setting := _setting_of(info)):
                out[setting] = value
        return out


class ServerTlsSection(Section):
    """server.tls: HTTPS on the REST API."""

    enabled: bool | None = to("tls_enabled", "serve the REST API over HTTPS only; without cert_file/key_file the "
                                             "controller issues its own certificate from its CA")
    cert_file: LocalPath | None = to("tls_cert_file", "certificate chain (PEM) of the REST API; with key_file")
    key_file: LocalPath | None = to("tls_key_file", "its private key (PEM); with cert_file")


class ServerSection(Section):
    """server: where the controller listens and what it keeps."""

    data_dir: Path | None = to("data_dir", "database, CA, admin key, local nodes")
    http_addr: ListenAddr | None = to("http_addr", "REST API listen address")
    public_url: HttpUrl | None = to("public_url", "URL nodes reach the API at (agent download); "
                                                  "default http(s)://<http_addr>")
    advertise_addr: AdvertiseAddr | None = to("advertise_addr", "host[:port] agents dial; default the grpc host")
    allow_insecure_public_url: bool | None = to("allow_insecure_public_url",
                                                "let EC2 regions run with an http:// public_url (TLS ends elsewhere)")
    tls: ServerTlsSection | None = Field(None, description=ServerTlsSection.__doc__)


class DatabaseSection(Section):
    """database: where the controller's state lives."""

    url: DatabaseUrl | None = to("database_url", "default sqlite+aiosqlite:///<data_dir>/vpnfleet.db (WAL); "
                                                 "PostgreSQL: postgresql+asyncpg://user:pass@host/db")


class RegionSection(Section):
    """aws.regions.<code>: one EC2 region nodes can be launched in."""

    name: str | None = Field(None, description="display name (default: the code)")
    template_id: str | None = Field(None, description="EC2 launch template id")
    instance_type: str | None = Field(None, description="overrides the launch template's instance type")
    ami_id: str | None = Field(None, description="overrides the launch template's image")
    reality_dest: Annotated[RealityDest | None, BeforeValidator(_blank_is_unset)] = Field(
        None, description="REALITY target of the region's nodes (default: v2ray.reality.dest)")
    reality_server_names: Annotated[ServerNames | None, BeforeValidator(_blank_is_unset)] = Field(
        None, description="names clients may ask for there (default: v2ray.reality.server_names)")

    def region(self, code: str) -> RegionSettings:
        return RegionSettings(code=code, name=self.name or code, provider="ec2", template_id=self.template_id or "",
                              instance_type=self.instance_type or "", ami_id=self.ami_id or "",
                              reality_dest=self.reality_dest or "",
                              reality_server_names=self.reality_server_names or ())


class AwsSection(Section):
    """aws: credentials and the regions nodes are launched in (seed 000)."""

    access_key: str | None = to("aws_access_key", "AWS access key id")
    secret_key: str | None = to("aws_secret_key", "AWS secret access key")
    endpoint_url: HttpUrl | None = to("aws_endpoint_url", "boto3 endpoint override (a VPC endpoint; moto in tests)")
    regions: dict[Annotated[str, AfterValidator(_region_code)], RegionSection | None] | None = to(
        "regions", "region code -> {name, template_id, ...}")

    def settings_values(self) -> dict[str, Any]:
        out = super().settings_values()
        if self.regions is not None:
            out["regions"] = tuple((spec or RegionSection()).region(code) for code, spec in self.regions.items())
        return out


class RealitySection(Section):
    """v2ray.reality: the site VLESS+REALITY borrows its handshake from."""

    dest: Annotated[RealityDest | None, BeforeValidator(_blank_is_unset)] = to(
        "reality_dest", "a public site's host:port (it must serve one of server_names)")
    server_names: Annotated[ServerNames | None, BeforeValidator(_blank_is_unset)] = to(
        "reality_server_names", "names clients may ask for (SNI)")


class V2raySection(Section):
    """v2ray: the proxy core on the nodes (seed 000's port and local relay, plus vpnfleet's profiles)."""

    enabled: bool | None = to("v2ray_enabled", "nodes run V2Ray/Xray for subscribers")
    core: Core | None = to("v2ray_core", "proxy core of new nodes: xray (VLESS+REALITY and VMess) or v2ray (VMess)")
    port: Port | None = to("v2ray_port", "VMess inbound of every node (seed 000's port)")
    vless_port: Port | None = to("v2ray_vless_port", "VLESS+REALITY inbound (\"local\" nodes get free ports)")
    subscription_update_hours: Count | None = to("subscription_update_hours",
                                                 "profile-update-interval header of /sub/...")
    local_config_path: LocalPath | None = to("v2ray_local_config_path", "a V2Ray config on this machine kept "
                                                                        "relaying to the running nodes")
    reload_command: str | None = to("v2ray_reload_command", "run after that file changed (no shell)")
    binary: str | None = to("v2ray_binary", "for `v2ray -test` of the local relay config")
    access_log: bool | None = to("v2ray_access_log", "V2Ray's access log on the nodes, streamed as live logs "
                                                     "(debugging only)")
    access_log_addresses: bool | None = to("v2ray_access_log_addresses",
                                           "show subscribers' source addresses in it (masked otherwise)")
    reality: RealitySection | None = Field(None, description=RealitySection.__doc__)
    tls: TlsSettings | None = to("v2ray_tls", "WebSocket+TLS profiles on every node (CDN fronting)")
    xray_release: XrayRelease | None = to("xray_release", "nodes download Xray here instead of from the controller")


class LoggingSection(Section):
    """logging: the controller's own log."""

    level: LogLevel | None = to("log_level", "debug, info, warning or error")
    file: LocalPath | None = to("log_file", "default: stderr")


class SchedulerSection(Section):
    """scheduler: the controller's periodic work (seed 000)."""

    instance_sync_interval: Seconds | None = to("instance_sync_interval", "seconds between provider syncs")
    instance_wait_timeout: Seconds | None = to("instance_wait_timeout",
                                               "max seconds for a machine and its agent to come up")
    client_check_interval: Seconds | None = to("client_check_interval", "seconds between expiry/limit checks")


class GrpcSection(Section):
    """grpc: the endpoints agents dial."""

    addr: GrpcAddr | None = to("grpc_addr", "mutual-TLS agent stream")
    enroll_addr: GrpcAddr | None = to("enroll_addr", "server-TLS enrollment")
    max_concurrent_handshakes: Count | None = to("max_concurrent_handshakes", "TLS handshakes served at once")


class LocalSection(Section):
    """local: the region "local" (agents as local processes)."""

    enabled: bool | None = to("local_enabled", "offer the region \"local\"")


class EnrollmentSection(Section):
    """enrollment: the one-time tokens new nodes enroll with."""

    token_ttl: TokenTtl | None = to("enrollment_token_ttl", "seconds a token is valid; 0: instance_wait_timeout "
                                                            f"+ {ENROLLMENT_TTL_MARGIN:g}")


class TelemetrySection(Section):
    """telemetry: what nodes report and how much of it is kept."""

    heartbeat_interval: Count | None = to("heartbeat_interval", "seconds between agent heartbeats")
    offline_after_missed: Count | None = to("offline_after_missed", "a node is offline after this many missed "
                                                                    "heartbeats plus offline_grace")
    offline_grace: Seconds | None = to("offline_grace", "seconds")
    metrics_interval: Count | None = to("metrics_interval", "default agent sampling interval, seconds")
    metrics_retention_days: Count | None = to("metrics_retention_days", "days of metrics kept")
    logs_per_node: Count | None = to("logs_per_node", "recent log lines kept in memory per node")
    log_line_max_bytes: Count | None = to("log_line_max_bytes", "a node's log line beyond this is cut")
    log_lines_per_second: Count | None = to("log_lines_per_second", "per node (10 s burst); lines beyond it are "
                                                                    "dropped and counted")
    max_link_mbps: Count | None = to("telemetry_max_link_mbps", "the fastest link a node may have: usage beyond "
                                                                "it is refused")
    max_clock_skew: Seconds | None = to("telemetry_max_clock_skew", "seconds a node's samples may be ahead of "
                                                                    "the controller's clock")


class EgressSection(Section):
    """egress: what subscribers' tunnels may not reach, on every node."""

    blocked_cidrs: Cidrs | None = to("egress_blocked_cidrs", "added to the agent's built-in set")
    allowed_cidrs: AllowedCidrs | None = to("egress_allowed_cidrs", "exceptions, e.g. a company network; never "
                                                                    "loopback or 0.0.0.0/8")
    block_bittorrent: bool | None = to("egress_block_bittorrent", "refuse BitTorrent (V2Ray sniffs the protocol)")


class DiagnosticsSection(Section):
    """diagnostics: the commands operators run on nodes."""

    allow_private_targets: bool | None = to("diagnostics_allow_private_targets", "tcping may target loopback, "
                                            "private, link-local (cloud metadata) and other reserved addresses")


class LimitsSection(Section):
    """limits: bounds on what one client can make the REST API hold."""

    max_body_bytes: BodyBytes | None = to("max_body_bytes", "largest request body (larger only where a route "
                                                            "needs it)")
    max_json_depth: JsonDepth | None = to("max_json_depth", "deepest nesting of a JSON body")
    header_timeout: Timeout | None = to("header_timeout", "seconds a client has to send a request's headers")
    idle_timeout: Timeout | None = to("idle_timeout", "seconds an idle keep-alive connection lives")
    max_connections: Connections | None = to("max_connections", "concurrent HTTP connections")
    auth_failures_per_window: Failures | None = to("auth_failures_per_window", "failed authentications a source "
                                                   "address may make per window before 429s")
    auth_failure_window: Window | None = to("auth_failure_window", "that window, seconds")


class AuditSection(Section):
    """audit: the operations log."""

    retention_days: Days | None = to("audit_retention_days", "operations older than this are pruned")


class PkiSection(Section):
    """pki: the controller's CA."""

    agent_cert_days: CertDays | None = to("agent_cert_days", "lifetime of agent certificates (renewed well "
                                                             "before expiry)")


class NodesSection(Section):
    """nodes: how many nodes can be launched, and how fast."""

    max_per_region: NodeQuota | None = to("max_nodes_per_region", "nodes in one region")
    creations_per_minute: NodeQuota | None = to("node_creations_per_minute", "node creations per minute")


class ConfigFile(Section):
    """The whole file: seed 000's sections, then vpnfleet's."""

    server: ServerSection | None = None
    database: DatabaseSection | None = None
    aws: AwsSection | None = None
    v2ray: V2raySection | None = None
    logging: LoggingSection | None = None
    scheduler: SchedulerSection | None = None
    grpc: GrpcSection | None = None
    local: LocalSection | None = None
    enrollment: EnrollmentSection | None = None
    telemetry: TelemetrySection | None = None
    egress: EgressSection | None = None
    diagnostics: DiagnosticsSection | None = None
    limits: LimitsSection | None = None
    audit: AuditSection | None = None
    pki: PkiSection | None = None
    nodes: NodesSection | None = None


#: Environment variables over the file: variable -> key. (An empty variable is ignored.)
ENV_OVERRIDES: dict[str, str] = {
    "VPNFLEET_DATA_DIR": "server.data_dir",
    "VPNFLEET_HTTP_ADDR": "server.http_addr",
    "VPNFLEET_PUBLIC_URL": "server.public_url",
    "VPNFLEET_ADVERTISE_ADDR": "server.advertise_addr",
    "VPNFLEET_ALLOW_INSECURE_PUBLIC_URL": "server.allow_insecure_public_url",
    "VPNFLEET_TLS_ENABLED": "server.tls.enabled",
    "VPNFLEET_TLS_CERT_FILE": "server.tls.cert_file",
    "VPNFLEET_TLS_KEY_FILE": "server.tls.key_file",
    "VPNFLEET_DATABASE_URL": "database.url",
    "AWS_ACCESS_KEY_ID": "aws.access_key",
    "AWS_SECRET_ACCESS_KEY": "aws.secret_key",
    "VPNFLEET_AWS_ENDPOINT_URL": "aws.endpoint_url",
    "VPNFLEET_V2RAY_ENABLED": "v2ray.enabled",
    "VPNFLEET_V2RAY_CORE": "v2ray.core",
    "VPNFLEET_V2RAY_REALITY_DEST": "v2ray.reality.dest",
    "VPNFLEET_V2RAY_REALITY_SERVER_NAMES": "v2ray.reality.server_names",
    "VPNFLEET_V2RAY_LOCAL_CONFIG_PATH": "v2ray.local_config_path",
    "VPNFLEET_V2RAY_RELOAD_COMMAND": "v2ray.reload_command",
    "VPNFLEET_V2RAY_ACCESS_LOG": "v2ray.access_log",
    "VPNFLEET_LOG_LEVEL": "logging.level",
    "VPNFLEET_INSTANCE_SYNC_INTERVAL": "scheduler.instance_sync_interval",
    "VPNFLEET_INSTANCE_WAIT_TIMEOUT": "scheduler.instance_wait_timeout",
    "VPNFLEET_CLIENT_CHECK_INTERVAL": "scheduler.client_check_interval",
    "VPNFLEET_GRPC_ADDR": "grpc.addr",
    "VPNFLEET_ENROLL_ADDR": "grpc.enroll_addr",
    "VPNFLEET_LOCAL_ENABLED": "local.enabled",
    "VPNFLEET_ENROLLMENT_TOKEN_TTL": "enrollment.token_ttl",
    "VPNFLEET_HEARTBEAT_INTERVAL": "telemetry.heartbeat_interval",
    "VPNFLEET_OFFLINE_GRACE": "telemetry.offline_grace",
    "VPNFLEET_METRICS_INTERVAL": "telemetry.metrics_interval",
    "VPNFLEET_EGRESS_BLOCKED_CIDRS": "egress.blocked_cidrs",
    "VPNFLEET_EGRESS_ALLOWED_CIDRS": "egress.allowed_cidrs",
    "VPNFLEET_DIAGNOSTICS_ALLOW_PRIVATE_TARGETS": "diagnostics.allow_private_targets",
    "VPNFLEET_MAX_BODY_BYTES": "limits.max_body_bytes",
    "VPNFLEET_MAX_JSON_DEPTH": "limits.max_json_depth",
    "VPNFLEET_HEADER_TIMEOUT": "limits.header_timeout",
    "VPNFLEET_IDLE_TIMEOUT": "limits.idle_timeout",
    "VPNFLEET_MAX_CONNECTIONS": "limits.max_connections",
    "VPNFLEET_AUTH_FAILURES_PER_WINDOW": "limits.auth_failures_per_window",
    "VPNFLEET_AUTH_FAILURE_WINDOW": "limits.auth_failure_window",
    "VPNFLEET_AUDIT_RETENTION_DAYS": "audit.retention_days",
    "VPNFLEET_AGENT_CERT_DAYS": "pki.agent_cert_days",
    "VPNFLEET_MAX_NODES_PER_REGION": "nodes.max_per_region",
    "VPNFLEET_NODE_CREATIONS_PER_MINUTE": "nodes.creations_per_minute",
}

#: keys whose values never appear in an error message
_SECRET_KEYS = {"aws.access_key", "aws.secret_key", "database.url"}


# -- loading ------------------------------------------------------------------------------------------------


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from ``path`` (or $VPNFLEET_CONFIG) and apply environment overrides."""
    env = os.environ if env is None else env
    path = path or env.get("VPNFLEET_CONFIG")
    raw: Any = {}
    if path:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise SettingsError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise SettingsError(f"config file {path} must be a mapping of sections")
    sources = _apply_env(raw, env)
    try:
        return Settings(**ConfigFile.model_validate(raw).settings_values())
    except ValidationError as exc:
        raise _settings_error(exc, sources) from None


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """Put each set variable at its key in ``raw``; returns {key: variable} to name them in errors."""
    sources = {}
    for var, key in ENV_OVERRIDES.items():
        if not env.get(var):
            continue
        *parents, leaf = key.split(".")
        node = raw
        for name in parents:
            if node.get(name) is None:
                node[name] = {}
            node = node[name]
            if not isinstance(node, dict):
                break  # the file's own section is malformed: that error is reported instead
        else:
            node[leaf] = env[var]
            sources[key] = var
    return sources


def _settings_error(exc: ValidationError, sources: Mapping[str, str]) -> SettingsError:
    """One message naming every bad setting by its key (and variable), never echoing a secret."""
    messages = []
    for error in exc.errors(include_url=False):
        loc = tuple(str(part) for part in error["loc"] if part != "[key]" and not isinstance(part, int))
        if len(loc) == 1 and loc[0] in _KEY_OF:  # a Settings field (a value set by keyword, or a bug here)
            loc = tuple(_KEY_OF[loc[0]].split("."))
        base = ".".join(loc)
        key = base + "".join(f"[{part}]" for part in error["loc"] if isinstance(part, int))  # a list's item
        what = "section" if len(loc) == 1 else "setting"
        kind = error["type"]
        if not loc:  # a check across settings: its message names them
            messages.append(str(error.get("ctx", {}).get("error") or error["msg"]))
        elif kind in ("extra_forbidden", "unexpected_keyword_argument"):
            messages.append(f"unknown {what} '{key}'{_did_you_mean(loc)}")
        elif kind in ("model_type", "dict_type", "dataclass_type", "model_attributes_type"):
            messages.append(f"{what} '{key}' must be a mapping")
        elif kind == "missing":
            messages.append(f"setting '{key}' is required")
        else:
            source = f" (from ${sources[base]})" if base in sources else ""
            text = str(error["ctx"]["error"]) if kind == "value_error" else error["msg"]
            shown = error.get("input")
            echo = kind != "value_error" and base not in _SECRET_KEYS and not isinstance(shown, (dict, list))
            messages.append(f"setting '{key}'{source}: {text}" + (f", got {shown!r}" if echo else ""))
    return SettingsError("; ".join(dict.fromkeys(messages)))


def _did_you_mean(loc: tuple[str, ...]) -> str:
    """A near key of the same mapping, for a typo."""
    parent = ".".join("<code>" if loc[:2] == ("aws", "regions") and i == 2 else part for i, part in enumerate(loc[:-1]))
    siblings = [key.rpartition(".")[2] for key in _ALL_KEYS if key.rpartition(".")[0] == parent]
    close = difflib.get_close_matches(loc[-1], siblings, n=1, cutoff=0.7)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _setting_of(info: FieldInfo) -> str | None:
    extra = info.json_schema_extra
    return str(extra["setting"]) if isinstance(extra, dict) and "setting" in extra else None


# -- the reference (docs/settings.md) -------------------------------------------------------------------------


class SettingDoc(NamedTuple):
    """One key of the file, as docs/settings.md lists it."""

    key: str  # "server.tls.cert_file"
    kind: str  # "integer, 1–65535"
    default: str
    env: str
    doc: str
    setting: str | None  # the Settings field it sets (None: a field of v2ray.tls, xray_release, a region)


class SectionDoc(NamedTuple):
    """One mapping of the file and its keys."""

    key: str  # "server.tls", "aws.regions.<code>"
    doc: str
    rows: list[SettingDoc]


def reference() -> list[SectionDoc]:
    """Every mapping and key of the file, in file order: type, bounds, default, environment variable."""
    out: list[SectionDoc] = []
    for name, info in ConfigFile.model_fields.items():
        _walk(_inner(info.annotation), name, out)
    return out


def _walk(model: Any, prefix: str, out: list[SectionDoc]) -> None:
    section = SectionDoc(prefix, (model.__doc__ or "").strip().split("\n")[0].split(": ", 1)[-1], [])
    out.append(section)
    for name, info in _fields(model).items():
        key, inner = f"{prefix}.{name}", _inner(info.annotation)
        if isinstance(inner, type) and (issubclass(inner, Section) or inner in (TlsSettings, XrayRelease)):
            _walk(inner, key, out)
        elif model is AwsSection and name == "regions":
            _walk(RegionSection, f"{key}.<code>", out)
        else:
            setting = _setting_of(info)
            declared = Settings.__pydantic_fields__[setting] if setting else info  # defaults live in Settings
            default = ("the code" if name == "name" else '""') if model is RegionSection else _default(declared)
            section.rows.append(SettingDoc(key, _kind(declared), default, _ENV_OF.get(key, ""),
                                           info.description or "", setting))


def _fields(model: Any) -> dict[str, FieldInfo]:
    return model.model_fields if issubclass(model, BaseModel) else model.__pydantic_fields__


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _flatten(annotation: Any, metadata: list[Any]) -> tuple[Any, list[Any]]:
    """The type inside Annotated / Optional layers, with every layer's metadata."""
    while True:
        if typing.get_origin(annotation) is Annotated:
            annotation, *more = typing.get_args(annotation)
            metadata = metadata + more
        elif _strip_optional(annotation) is not annotation:
            annotation = _strip_optional(annotation)
        else:
            return annotation, metadata


def _inner(annotation: Any) -> Any:
    return _flatten(annotation, [])[0]


def _kind(info: FieldInfo) -> str:
    """"integer, 1–65535", "list of CIDRs", "one of xray, v2ray", ..."""
    annotation, metadata = _flatten(info.annotation, list(info.metadata))
    kinds = [m.text for m in metadata if isinstance(m, Kind)]
    if kinds:
        text = kinds[0]
    elif typing.get_origin(annotation) is Literal:
        text = "one of " + ", ".join(map(str, typing.get_args(annotation)))
    else:
        text = {int: "integer", float: "number", bool: "boolean", str: "string", Path: "path"}.get(annotation, "")
    ge = next((m.ge for m in metadata if isinstance(m, annotated_types.Ge)), None)
    gt = next((m.gt for m in metadata if isinstance(m, annotated_types.Gt)), None)
    le = next((m.le for m in metadata if isinstance(m, annotated_types.Le)), None)
    if ge is not None and le is not None:
        return f"{text}, {_num(ge)}–{_num(le)}"
    bounds = [f"> {_num(gt)}" if gt is not None else "", f">= {_num(ge)}" if ge is not None else "",
              f"<= {_num(le)}" if le is not None else ""]
    return ", ".join(p for p in (text, *bounds) if p)


def _num(value: Any) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.default
    if value is None:
        return "none"
    if value == "":
        return '""'
    value = list(value) if isinstance(value, tuple) else str(value) if isinstance(value, Path) else value
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True).strip().removesuffix("...").strip()


def render_reference() -> str:
    """docs/settings.md."""
    out = [_DOC_HEAD]
    for section in reference():
        out.append(f"\n## `{section.key}`\n\n{_md(section.doc[:1].upper() + section.doc[1:])}\n")
        if section.rows:
            out.append("| key | type | default | environment | meaning |\n|---|---|---|---|---|")
        for row in section.rows:
            default = row.default if row.default in ("required", "none", "the code") else f"`{row.default}`"
            env = f"`{row.env}`" if row.env else ""
            out.append(f"| `{row.key.rpartition('.')[2]}` | {row.kind} | {default} | {env} | {_md(row.doc)} |")
    return "\n".join(out) + "\n"


def _md(text: str) -> str:
    """Text safe in a Markdown table cell."""
    return text.replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


_ENV_OF = {key: var for var, key in ENV_OVERRIDES.items()}
#: every key and mapping of the file (for "did you mean")
_ALL_KEYS = [key for section in reference() for key in (section.key, *(row.key for row in section.rows))]


def _keys_of_settings() -> dict[str, str]:
    """{Settings field: its key in the file}, to name a field's error by the key operators write."""
    out = {row.setting: row.key for section in reference() for row in section.rows if row.setting}
    out.update(regions="aws.regions", v2ray_tls="v2ray.tls", xray_release="v2ray.xray_release")
    return out


_KEY_OF = _keys_of_settings()

_DOC_HEAD = """\
# Settings reference

<!-- generated: `python -m controller.settings > docs/settings.md`; tests/unit/test_settings_reference.py
     fails when this file and controller/settings.py disagree -->

The controller reads one YAML file (`vpnfleet-controller --config FILE`, or `$VPNFLEET_CONFIG`). Its sections
follow seed 000's V2Ray backend (`server`, `database`, `aws`, `v2ray`, `logging`, `scheduler`), then vpnfleet's
own. Every key is optional; a key left out, or `null`, keeps its default. Environment variables (the
*environment* column) override the file; an empty variable is ignored; lists may be given comma-separated.

Every key is checked at start. An unknown key (`unknown setting 'server.tls.cert_fil' (did you mean
'cert_file'?)`), a value of the wrong type or out of its bounds, or settings that contradict each other
(`v2ray.port` equal to `v2ray.vless_port`, a REALITY `dest` that is not one of its `server_names`, only one of
`server.tls.cert_file` / `key_file`) stop the controller with a message that names the key, and the variable
when the value came from the environment. Secrets (`aws.access_key`, `aws.secret_key`, `database.url`) are
never echoed."""


if __name__ == "__main__":
    print(render_reference(), end="")
