"""Controller settings: a YAML file whose sections follow seed 000, overridden by environment variables.

Sections: ``server``, ``database``, ``aws``, ``v2ray``, ``logging``, ``scheduler``, plus vpnfleet's own
``grpc``, ``local``, ``enrollment`` and ``telemetry``. Every field has a default, so an empty or missing file
gives a working controller on SQLite with the ``local`` provider.
"""

from __future__ import annotations

import ipaddress
import re
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from controller import reality

#: Root of the source tree (for the cloud-init template shipped beside the packages).
REPO_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """The settings file or environment holds a bad value; the message names it."""


@dataclass(frozen=True)
class RegionSettings:
    """One region nodes can be launched in."""

    code: str
    name: str
    provider: str  # "ec2" or "local"
    template_id: str = ""  # EC2 launch template id (ec2 only)
    instance_type: str = ""  # overrides the launch template's type when set
    ami_id: str = ""  # overrides the launch template's image when set
    #: REALITY target site of the region's nodes ("" / (): the fleet's, v2ray.reality.*)
    reality_dest: str = ""
    reality_server_names: tuple[str, ...] = ()


#: what an enrollment token lives beyond instance_wait_timeout (boot, package install, clock skew)
ENROLLMENT_TTL_MARGIN = 120.0

#: The proxy cores a node can run (controller.services.desired_state); new nodes get Settings.v2ray_core.
CORES = ("xray", "v2ray")


@dataclass(frozen=True)
class TlsSettings:
    """v2ray.tls: a domain with its certificate on every node, for the WebSocket+TLS profiles (CDN fronting).
    The files are provisioned outside vpnfleet (ACME or otherwise); the paths are on the nodes."""

    domain: str
    certificate_file: str
    key_file: str
    #: ports of the vmess-ws-tls and vless-ws-tls inbounds (ports a CDN proxies: 8443, 2053, 2083, ...)
    vmess_port: int = 8443
    vless_port: int = 2053
    #: what subscribers dial for these profiles ("" : the node's own address; else, e.g., the CDN's name)
    address: str = ""


@dataclass(frozen=True)
class XrayRelease:
    """The Xray binary nodes download from elsewhere than the controller, checked against its sha256."""

    url: str
    sha256: str
    version: str
    arch: str = "amd64"

    @property
    def filename(self) -> str:
        return f"xray-{self.version}-linux-{self.arch}"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("data")
    http_addr: str = "127.0.0.1:8080"
    #: mutual-TLS endpoint agents stream on (Agent.Connect)
    grpc_addr: str = "127.0.0.1:50051"
    #: server-TLS endpoint agents enroll on (Enrollment.Enroll); gRPC cannot ask for client
    #: certificates only for some calls, so enrollment has its own port.
    enroll_addr: str = "127.0.0.1:50052"
    #: host (or host:port) agents dial; the ports of grpc_addr / enroll_addr are used when no port is given
    advertise_addr: str = ""
    #: URL nodes download the agent package from; default derived from http_addr
    public_url: str = ""
    database_url: str = ""
    aws_access_key: str = ""
    aws_secret_key: str = ""
    #: boto3 endpoint override (moto in tests, or a VPC endpoint)
    aws_endpoint_url: str = ""
    regions: tuple[RegionSettings, ...] = ()
    local_enabled: bool = True
    #: run V2Ray/Xray on the nodes (VMess on v2ray_port, VLESS+REALITY on v2ray_vless_port on Xray)
    v2ray_enabled: bool = True
    v2ray_port: int = 11994
    v2ray_vless_port: int = 11995
    #: the proxy core of new nodes: "xray" (VLESS+REALITY+Vision and VMess) or "v2ray" (VMess only)
    v2ray_core: str = "xray"
    #: REALITY's target site (the handshake it borrows) and the names clients may ask for; per region in
    #: aws.regions.<code>.reality_dest / reality_server_names, per node through the API
    reality_dest: str = reality.DEFAULT_DEST
    reality_server_names: tuple[str, ...] = reality.DEFAULT_SERVER_NAMES
    #: WebSocket+TLS profiles (vmess-ws-tls, vless-ws-tls) on every node: only when configured
    v2ray_tls: TlsSettings | None = None
    #: where nodes download Xray instead of the controller (a mirror of the pinned release's linux binary):
    #: v2ray.xray_release {url, sha256, version, arch}; None: the controller serves its own (core_bundle)
    xray_release: "XrayRelease | None" = None
    #: a V2Ray config on this machine whose outbounds follow the running nodes (seed 000's local relay)
    v2ray_local_config_path: str = ""
    #: run after the local relay config changed (no shell), e.g. "systemctl restart v2ray"
    v2ray_reload_command: str = ""
    v2ray_binary: str = "v2ray"
    #: seconds between checks for expired and over-limit subscribers (seed 004's deactivate_expired)
    client_check_interval: float = 5.0
    #: hours a subscriber's app waits between subscription refreshes (profile-update-interval header)
    subscription_update_hours: int = 12
    log_level: str = "info"
    log_file: str = ""
    instance_sync_interval: float = 60.0
    instance_wait_timeout: float = 300.0
    #: seconds an enrollment token lives; 0 (the default): instance_wait_timeout plus ENROLLMENT_TTL_MARGIN
    enrollment_token_ttl: float = 0.0
    heartbeat_interval: int = 10
    #: a node is offline after this many missed heartbeats plus offline_grace seconds
    offline_after_missed: int = 3
    offline_grace: float = 5.0
    metrics_interval: int = 10
    metrics_retention_days: int = 7
    logs_per_node: int = 2000
    #: a node's log line longer than this (bytes of UTF-8) is cut, with a marker saying so
    log_line_max_bytes: int = 8192
    #: lines per second a node may stream (burst: 10 s worth); beyond it lines are dropped and counted
    log_lines_per_second: int = 200
    #: the fastest link a node may have: a batch reporting more bytes than this carries in its period is refused
    telemetry_max_link_mbps: int = 100_000
    #: samples stamped further ahead of the controller's clock than this are refused
    telemetry_max_clock_skew: float = 300.0
    max_concurrent_handshakes: int = 64
    #: destinations subscribers may not reach, besides the agent's built-in set (loopback, private, ...)
    egress_blocked_cidrs: tuple[str, ...] = ()
    #: exceptions to the blocked set (never loopback or 0.0.0.0/8: the node itself stays out of reach)
    egress_allowed_cidrs: tuple[str, ...] = ()
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
    tls_cert_file: str = ""
    tls_key_file: str = ""
    #: server.allow_insecure_public_url: EC2 regions start with an http:// public_url (a TLS proxy elsewhere)
    allow_insecure_public_url: bool = False
    #: limits.*: bounded requests
    max_body_bytes: int = 1024 * 1024
    max_json_depth: int = 32
    #: seconds a client has to send a request's headers (slowloris), and an idle keep-alive connection lives
    header_timeout: float = 10.0
    idle_timeout: float = 5.0
    max_connections: int = 1000
    #: failed authentications a source address may make per auth_failure_window seconds before 429s
    auth_failures_per_window: int = 20
    auth_failure_window: float = 60.0
    #: audit.retention_days: operations older than this are pruned by the schedule
    audit_retention_days: int = 365
    #: pki.agent_cert_days: lifetime of agent certificates (renewed by the agent well before expiry)
    agent_cert_days: int = 90
    #: nodes.max_per_region / nodes.creations_per_minute: a bound on what one key can launch
    max_nodes_per_region: int = 100
    node_creations_per_minute: int = 10

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
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise SettingsError(f"bad port in address {addr!r}")
    return host, int(port_text)


def _dialable(host: str) -> str:
    """A wildcard listen host is not something to dial: use loopback instead."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def join_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- loading ------------------------------------------------------------------------------------------------

_ENV_OVERRIDES = {
    "VPNFLEET_DATA_DIR": "data_dir",
    "VPNFLEET_DATABASE_URL": "database_url",
    "VPNFLEET_HTTP_ADDR": "http_addr",
    "VPNFLEET_GRPC_ADDR": "grpc_addr",
    "VPNFLEET_ENROLL_ADDR": "enroll_addr",
    "VPNFLEET_ADVERTISE_ADDR": "advertise_addr",
    "VPNFLEET_PUBLIC_URL": "public_url",
    "VPNFLEET_LOG_LEVEL": "log_level",
    "VPNFLEET_AWS_ENDPOINT_URL": "aws_endpoint_url",
    "VPNFLEET_INSTANCE_SYNC_INTERVAL": "instance_sync_interval",
    "VPNFLEET_INSTANCE_WAIT_TIMEOUT": "instance_wait_timeout",
    "VPNFLEET_HEARTBEAT_INTERVAL": "heartbeat_interval",
    "VPNFLEET_OFFLINE_GRACE": "offline_grace",
    "VPNFLEET_ENROLLMENT_TOKEN_TTL": "enrollment_token_ttl",
    "VPNFLEET_METRICS_INTERVAL": "metrics_interval",
    "VPNFLEET_LOCAL_ENABLED": "local_enabled",
    "VPNFLEET_V2RAY_ENABLED": "v2ray_enabled",
    "VPNFLEET_V2RAY_CORE": "v2ray_core",
    "VPNFLEET_V2RAY_REALITY_DEST": "reality_dest",
    "VPNFLEET_V2RAY_REALITY_SERVER_NAMES": "reality_server_names",
    "VPNFLEET_V2RAY_LOCAL_CONFIG_PATH": "v2ray_local_config_path",
    "VPNFLEET_V2RAY_RELOAD_COMMAND": "v2ray_reload_command",
    "VPNFLEET_CLIENT_CHECK_INTERVAL": "client_check_interval",
    "VPNFLEET_V2RAY_ACCESS_LOG": "v2ray_access_log",
    "VPNFLEET_EGRESS_BLOCKED_CIDRS": "egress_blocked_cidrs",
    "VPNFLEET_EGRESS_ALLOWED_CIDRS": "egress_allowed_cidrs",
    "VPNFLEET_DIAGNOSTICS_ALLOW_PRIVATE_TARGETS": "diagnostics_allow_private_targets",
    "AWS_ACCESS_KEY_ID": "aws_access_key",
    "AWS_SECRET_ACCESS_KEY": "aws_secret_key",
}


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from ``path`` (or $VPNFLEET_CONFIG) and apply environment overrides."""
    env = os.environ if env is None else env
    path = path or env.get("VPNFLEET_CONFIG")
    raw: dict[str, Any] = {}
    if path:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise SettingsError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise SettingsError(f"config file {path} must be a mapping of sections")
    values = _from_sections(raw)
    for var, name in _ENV_OVERRIDES.items():
        if env.get(var):
            values[name] = env[var]
    return _build(values)


def _section(raw: dict[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name) or {}
    if not isinstance(value, dict):
        raise SettingsError(f"section '{name}' must be a mapping")
    return value


def _from_sections(raw: dict[str, Any]) -> dict[str, Any]:
    server, database, aws = _section(raw, "server"), _section(raw, "database"), _section(raw, "aws")
    v2ray, logging_, scheduler = _section(raw, "v2ray"), _section(raw, "logging"), _section(raw, "scheduler")
    grpc, local, enrollment = _section(raw, "grpc"), _section(raw, "local"), _section(raw, "enrollment")
    telemetry, egress, diagnostics = _section(raw, "telemetry"), _section(raw, "egress"), _section(raw, "diagnostics")
    values: dict[str, Any] = {}

    def put(name: str, section: dict[str, Any], key: str) -> None:
        if key in section and section[key] is not None:
            values[name] = section[key]

    put("data_dir", server, "data_dir")
    put("http_addr", server, "http_addr")
    put("public_url", server, "public_url")
    put("advertise_addr", server, "advertise_addr")
    put("database_url", database, "url")
    put("aws_access_key", aws, "access_key")
    put("aws_secret_key", aws, "secret_key")
    put("aws_endpoint_url", aws, "endpoint_url")
    put("v2ray_enabled", v2ray, "enabled")
    put("v2ray_port", v2ray, "port")
    put("v2ray_vless_port", v2ray, "vless_port")
    put("v2ray_local_config_path", v2ray, "local_config_path")
    put("v2ray_reload_command", v2ray, "reload_command")
    put("v2ray_binary", v2ray, "binary")
    put("v2ray_core", v2ray, "core")
    reality_section = v2ray.get("reality") or {}
    if not isinstance(reality_section, dict):
        raise SettingsError("v2ray.reality must be a mapping {dest, server_names}")
    put("reality_dest", reality_section, "dest")
    put("reality_server_names", reality_section, "server_names")
    if v2ray.get("xray_release") is not None:
        values["xray_release"] = _xray_release(v2ray["xray_release"])
    if v2ray.get("tls") is not None:
        values["v2ray_tls"] = _tls(v2ray["tls"])
    put("client_check_interval", scheduler, "client_check_interval")
    put("subscription_update_hours", v2ray, "subscription_update_hours")
    put("log_level", logging_, "level")
    put("log_file", logging_, "file")
    put("instance_sync_interval", scheduler, "instance_sync_interval")
    put("instance_wait_timeout", scheduler, "instance_wait_timeout")
    put("grpc_addr", grpc, "addr")
    put("enroll_addr", grpc, "enroll_addr")
    put("max_concurrent_handshakes", grpc, "max_concurrent_handshakes")
    put("local_enabled", local, "enabled")
    put("enrollment_token_ttl", enrollment, "token_ttl")
    put("heartbeat_interval", telemetry, "heartbeat_interval")
    put("offline_grace", telemetry, "offline_grace")
    put("metrics_interval", telemetry, "metrics_interval")
    put("metrics_retention_days", telemetry, "metrics_retention_days")
    put("logs_per_node", telemetry, "logs_per_node")
    put("log_line_max_bytes", telemetry, "log_line_max_bytes")
    put("log_lines_per_second", telemetry, "log_lines_per_second")
    put("telemetry_max_link_mbps", telemetry, "max_link_mbps")
    put("telemetry_max_clock_skew", telemetry, "max_clock_skew")
    put("egress_blocked_cidrs", egress, "blocked_cidrs")
    put("egress_allowed_cidrs", egress, "allowed_cidrs")
    put("egress_block_bittorrent", egress, "block_bittorrent")
    put("v2ray_access_log", v2ray, "access_log")
    put("v2ray_access_log_addresses", v2ray, "access_log_addresses")
    put("diagnostics_allow_private_targets", diagnostics, "allow_private_targets")

    regions = aws.get("regions") or {}
    if not isinstance(regions, dict):
        raise SettingsError("aws.regions must be a mapping of region code to {name, template_id}")
    parsed = []
    for code, spec in regions.items():
        spec = spec or {}
        if not isinstance(spec, dict):
            raise SettingsError(f"aws.regions.{code} must be a mapping")
        if code == "local":
            raise SettingsError("aws.regions: 'local' is reserved for the local provider")
        parsed.append(
            RegionSettings(
                code=str(code),
                name=str(spec.get("name") or code),
                provider="ec2",
                template_id=str(spec.get("template_id") or ""),
                instance_type=str(spec.get("instance_type") or ""),
                ami_id=str(spec.get("ami_id") or ""),
                reality_dest=_reality_dest(f"aws.regions.{code}.reality_dest", spec.get("reality_dest")),
                reality_server_names=_server_names(f"aws.regions.{code}.reality_server_names",
                                                   spec.get("reality_server_names")),
            )
        )
    values["regions"] = tuple(parsed)
    return values


_FLOATS = {"instance_sync_interval", "instance_wait_timeout", "enrollment_token_ttl", "offline_grace",
           "client_check_interval", "telemetry_max_clock_skew"}
_INTS = {"v2ray_port", "v2ray_vless_port", "subscription_update_hours", "heartbeat_interval", "metrics_interval", "metrics_retention_days", "logs_per_node",
         "max_concurrent_handshakes", "offline_after_missed", "log_line_max_bytes", "log_lines_per_second",
         "telemetry_max_link_mbps"}
_BOOLS = ("local_enabled", "v2ray_enabled", "egress_block_bittorrent", "v2ray_access_log",
          "v2ray_access_log_addresses", "diagnostics_allow_private_targets")
#: What egress.allowed_cidrs may never open: the node itself.
_NODE_ITSELF = tuple(ipaddress.ip_network(n) for n in ("0.0.0.0/8", "127.0.0.0/8", "::1/128", "::/128"))


def _cidrs(name: str, value: Any) -> tuple[str, ...]:
    """A list of CIDRs (or one string of them, comma-separated), normalised; SettingsError names the bad one."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise SettingsError(f"setting '{name}' must be a list of CIDRs")
    out = []
    for item in items:
        try:
            network = ipaddress.ip_network(str(item).strip(), strict=False)
        except ValueError:
            raise SettingsError(f"setting '{name}': {item!r} is not a CIDR") from None
        out.append(network.with_prefixlen)
    return tuple(out)


def _reality_dest(name: str, value: Any) -> str:
    if value is None or value == "":
        return ""
    try:
        return reality.check_dest(value)
    except ValueError as exc:
        raise SettingsError(f"setting '{name}': {exc}") from None


def _server_names(name: str, value: Any) -> tuple[str, ...]:
    if value is None or value == [] or value == "":
        return ()
    if isinstance(value, str):
        value = value.split(",")
    try:
        return tuple(reality.check_server_names(value))
    except ValueError as exc:
        raise SettingsError(f"setting '{name}': {exc}") from None


def _xray_release(raw: Any) -> XrayRelease:
    """v2ray.xray_release: {url: http(s) URL of the bare linux binary, sha256, version (x.y.z), arch}."""
    if not isinstance(raw, dict):
        raise SettingsError("v2ray.xray_release must be a mapping {url, sha256, version, arch}")
    url, sha256 = str(raw.get("url") or ""), str(raw.get("sha256") or "").lower()
    version, arch = str(raw.get("version") or ""), str(raw.get("arch") or "amd64")
    if not url.startswith(("https://", "http://")):
        raise SettingsError("v2ray.xray_release.url must be an http(s) URL")
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise SettingsError("v2ray.xray_release.sha256 must be the binary's SHA-256 (64 hex digits)")
    if not re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", version):
        raise SettingsError("v2ray.xray_release.version must be x.y.z, e.g. 26.3.27")
    if arch not in ("amd64", "arm64"):
        raise SettingsError("v2ray.xray_release.arch must be amd64 or arm64")
    return XrayRelease(url=url, sha256=sha256, version=version, arch=arch)


def _port(name: str, value: Any) -> int:
    if isinstance(value, bool) or not str(value).isdigit() or not 1 <= int(value) <= 65535:
        raise SettingsError(f"setting '{name}' must be a port (1-65535), got {value!r}")
    return int(value)


def _tls(raw: Any) -> TlsSettings:
    """v2ray.tls: {domain, certificate_file, key_file[, vmess_port, vless_port, address]}."""
    if not isinstance(raw, dict):
        raise SettingsError("v2ray.tls must be a mapping {domain, certificate_file, key_file}")
    unknown = set(raw) - {"domain", "certificate_file", "key_file", "vmess_port", "vless_port", "address"}
    if unknown:
        raise SettingsError(f"v2ray.tls: unknown setting '{sorted(unknown)[0]}'")
    try:
        domain = reality.check_server_name(str(raw.get("domain") or ""))
    except ValueError as exc:
        raise SettingsError(f"setting 'v2ray.tls.domain': {exc}") from None
    files = {}
    for key in ("certificate_file", "key_file"):
        value = str(raw.get(key) or "")
        if not value.startswith("/") or any(c in value for c in "\x00\n\r"):
            raise SettingsError(f"setting 'v2ray.tls.{key}' must be an absolute path on the nodes, got {value!r}")
        files[key] = value
    address = str(raw.get("address") or "").strip()
    if address:
        try:
            ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            try:
                address = reality.check_server_name(address)
            except ValueError as exc:
                raise SettingsError(f"setting 'v2ray.tls.address': {exc}") from None
    tls = TlsSettings(domain=domain, address=address, **files,
                      vmess_port=_port("v2ray.tls.vmess_port", raw.get("vmess_port", 8443)),
                      vless_port=_port("v2ray.tls.vless_port", raw.get("vless_port", 2053)))
    if tls.vmess_port == tls.vless_port:
        raise SettingsError("v2ray.tls.vmess_port and v2ray.tls.vless_port must differ")
    return tls


def _build(values: dict[str, Any]) -> Settings:
    for name in list(values):
        try:
            if name in _FLOATS:
                values[name] = float(values[name])
                if values[name] <= 0:
                    raise ValueError
            elif name in _INTS:
                values[name] = int(values[name])
                if values[name] <= 0:
                    raise ValueError
        except (TypeError, ValueError):
            raise SettingsError(f"setting '{name}' must be a positive number, got {values[name]!r}") from None
    for name in ("egress_blocked_cidrs", "egress_allowed_cidrs"):
        if name in values:
            values[name] = _cidrs(name, values[name])
    for cidr in values.get("egress_allowed_cidrs", ()):
        network = ipaddress.ip_network(cidr)
        if any(network.version == n.version and network.overlaps(n) for n in _NODE_ITSELF):
            raise SettingsError(f"egress.allowed_cidrs: {cidr} would open the node itself (loopback or 0.0.0.0/8)")
    for name in _BOOLS:
        if name in values:
            values[name] = str(values[name]).lower() not in ("0", "false", "no", "off")
    for name in ("v2ray_port", "v2ray_vless_port"):
        if name in values and not 1 <= values[name] <= 65535:
            raise SettingsError(f"setting '{name}' must be a port (1-65535), got {values[name]}")
    if values.get("v2ray_port", 11994) == values.get("v2ray_vless_port", 11995):
        raise SettingsError("v2ray.port (VMess) and v2ray.vless_port must differ")
    tls = values.get("v2ray_tls")
    if tls is not None and {tls.vmess_port, tls.vless_port} & {values.get("v2ray_port", 11994),
                                                              values.get("v2ray_vless_port", 11995)}:
        raise SettingsError("v2ray.tls.vmess_port / vless_port must differ from v2ray.port and v2ray.vless_port")
    if "v2ray_core" in values:
        values["v2ray_core"] = str(values["v2ray_core"]).strip().lower()
        if values["v2ray_core"] not in CORES:
            raise SettingsError(f"v2ray.core must be one of {', '.join(CORES)}, got {values['v2ray_core']!r}")
    if "reality_dest" in values:
        values["reality_dest"] = _reality_dest("v2ray.reality.dest", values["reality_dest"]) or reality.DEFAULT_DEST
    if "reality_server_names" in values:
        values["reality_server_names"] = (_server_names("v2ray.reality.server_names", values["reality_server_names"])
                                          or reality.DEFAULT_SERVER_NAMES)
    try:
        reality.check_target(values.get("reality_dest", reality.DEFAULT_DEST),
                             list(values.get("reality_server_names", reality.DEFAULT_SERVER_NAMES)))
        for region in values.get("regions", ()):
            if region.reality_dest or region.reality_server_names:
                dest = region.reality_dest or values.get("reality_dest", reality.DEFAULT_DEST)
                names = region.reality_server_names or values.get("reality_server_names",
                                                                  reality.DEFAULT_SERVER_NAMES)
                reality.check_target(dest, list(names))
    except ValueError as exc:
        raise SettingsError(f"v2ray.reality / aws.regions.*.reality_*: {exc}") from None
    if "data_dir" in values:
        values["data_dir"] = Path(values["data_dir"])
    for name in ("http_addr", "grpc_addr", "enroll_addr"):
        if name in values and not (name != "http_addr" and is_unix(str(values[name]))):
            host, port = split_hostport(str(values[name]))
            if not host or port == 0 and name != "http_addr":
                raise SettingsError(f"setting '{name}' must be host:port, got {values[name]!r}")
    if values.get("log_level", "info").lower() not in ("debug", "info", "warning", "error"):
        raise SettingsError("logging.level must be one of debug, info, warning, error")
    return Settings(**values)
