"""The values the controller reads: the flat, frozen ``Settings`` and the mappings it holds.

``Settings`` declares each value's type, bounds and default once and checks them again when it is built directly
by keyword (as tests do); its properties derive what several values decide (``db_url``, ``advertised_grpc``, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator
from pydantic.dataclasses import dataclass

from controller import reality
from controller.settings.addresses import _dialable, is_unix, join_hostport, split_hostport
from controller.settings.types import (
    _FORBID,
    Argon2MemoryKib,
    Argon2Time,
    Attempts,
    PasswordLength,
    PerMinute,
    Roles,
    SessionLifetime,
    SmtpSecurity,
    TokenLifetime,
    AdvertiseAddr,
    AllowedCidrs,
    BodyBytes,
    CertDays,
    Cidrs,
    Connections,
    Core,
    Count,
    DatabaseUrl,
    Days,
    Failures,
    GrpcAddr,
    HttpUrl,
    JsonDepth,
    Kind,
    ListenAddr,
    LocalPath,
    LogLevel,
    NodePath,
    NodeQuota,
    Port,
    RealityDest,
    Seconds,
    ServerNames,
    Timeout,
    TokenTtl,
    Window,
    _lower,
    _optional_dest,
    _optional_names,
    _sha256,
    _tls_address,
    _version,
)

#: Root of the source tree (for the cloud-init template shipped beside the packages).
REPO_ROOT = Path(__file__).resolve().parent.parent.parent

#: what an enrollment token lives beyond instance_wait_timeout (boot, package install, clock skew)
ENROLLMENT_TTL_MARGIN = 120.0


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
        """xray-<version>-linux-<arch>."""
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
    tls_enabled: bool = True
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

    # -- accounts, sessions, rate limits (issue 12) ---------------------------------------------------------
    #: auth.access_token_ttl: seconds a signed-in client's access token (JWT) lives; refreshed with its
    #: refresh token, which lives as long as the session: session_ttl, or remember_me_ttl with remember_me
    access_token_ttl: TokenLifetime = 900.0
    session_ttl: SessionLifetime = 86400.0
    remember_me_ttl: SessionLifetime = 30 * 86400.0
    #: auth.max_login_attempts wrong passwords in a row lock an account for lockout_seconds
    max_login_attempts: Attempts = 5
    lockout_seconds: Window = 900.0
    #: auth.password_min_length: the password policy's floor (also: not the username, not all one class)
    password_min_length: PasswordLength = 12
    #: auth.argon2_*: Argon2id cost per password check (RFC 9106's second recommendation by default)
    argon2_time_cost: Argon2Time = 3
    argon2_memory_kib: Argon2MemoryKib = 64 * 1024
    #: auth.jwt_key_days: the JWT signing key is replaced this often (the old one is accepted until its
    #: tokens expire, so nobody is logged out by it)
    jwt_key_days: Days = 30
    #: auth.self_registration: anyone may POST /api/v1/auth/register a ``user`` account (off by default)
    self_registration: bool = False
    #: auth.code_ttl: seconds an emailed verification or password-reset code is good for
    code_ttl: Timeout = 900.0
    #: auth.require_two_factor_roles: accounts of these roles must enrol TOTP before they can do anything else
    require_two_factor_roles: Roles = ()
    #: rate_limits.*: requests per minute per key (unless the key sets its own) and per signed-in account,
    #: per anonymous source address, and per source address on the public subscription URL (/sub/...)
    rate_limit_authenticated: PerMinute = 1000
    rate_limit_anonymous: PerMinute = 100
    rate_limit_subscription: PerMinute = 60
    #: smtp.*: where verification and reset codes are sent from; with no host they are written to
    #: DATA_DIR/outbox/ (0600 files; what `make run` uses) instead
    smtp_host: str = ""
    smtp_port: Port = 587
    smtp_username: str = ""
    smtp_password: str = Field("", repr=False)
    smtp_sender: str = "vpnfleet@localhost"
    smtp_security: SmtpSecurity = "starttls"

    # -- checks across settings (messages name the keys of the file) --------------------------------------
    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.v2ray_port == self.v2ray_vless_port:
            raise ValueError("v2ray.port (VMess) and v2ray.vless_port must differ")
        tls = self.v2ray_tls
        if tls is not None and {tls.vmess_port, tls.vless_port} & {self.v2ray_port, self.v2ray_vless_port}:
            raise ValueError("v2ray.tls.vmess_port / vless_port must differ from v2ray.port and v2ray.vless_port")
        if self.smtp_username and self.smtp_security == "none" and self.smtp_host not in ("127.0.0.1", "::1",
                                                                                         "localhost"):
            raise ValueError("smtp.username with smtp.security none would send the SMTP password in clear")
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
        """database.url, or SQLite in data_dir."""
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'vpnfleet.db'}"

    @property
    def http_url(self) -> str:
        """The REST API's base URL: public_url, else derived from http_addr."""
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
        """The region ``code`` ("local" included), or None."""
        return next((r for r in self.all_regions() if r.code == code), None)

    def all_regions(self) -> tuple[RegionSettings, ...]:
        """The configured regions, after "local" when it is enabled."""
        local = (RegionSettings(code="local", name="Local", provider="local"),) if self.local_enabled else ()
        return local + self.regions

    def reality_target(self, region: str) -> tuple[str, tuple[str, ...]]:
        """(dest, server names) of a region's nodes: the region's own where set, else the fleet's."""
        spec = self.region(region)
        return ((spec.reality_dest if spec and spec.reality_dest else self.reality_dest),
                (spec.reality_server_names if spec and spec.reality_server_names else self.reality_server_names))
