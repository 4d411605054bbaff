"""The YAML file: one declared model per section, refusing unknown keys.

Each key names the ``Settings`` value it sets (``to("v2ray_port", ...)``); ``ConfigFile.settings_values()`` gives
the values a file sets, to build ``Settings`` from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.fields import FieldInfo

from controller.settings.model import ENROLLMENT_TTL_MARGIN, RegionSettings, TlsSettings, XrayRelease
from controller.settings.types import (
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
    ListenAddr,
    LocalPath,
    LogLevel,
    NodeQuota,
    Port,
    RealityDest,
    Seconds,
    ServerNames,
    Timeout,
    TokenTtl,
    Window,
    _region_code,
)


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
        """The EC2 region ``code`` this entry describes."""
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


class AuthSection(Section):
    """auth: accounts, sessions and 2FA."""

    access_token_ttl: TokenLifetime | None = to("access_token_ttl", "seconds an access token (JWT) lives")
    session_ttl: SessionLifetime | None = to("session_ttl", "seconds a sign-in (its refresh tokens) lives")
    remember_me_ttl: SessionLifetime | None = to("remember_me_ttl", "the same, signed in with remember_me")
    max_login_attempts: Attempts | None = to("max_login_attempts", "wrong passwords in a row that lock an "
                                                                   "account")
    lockout_seconds: Window | None = to("lockout_seconds", "how long a locked account stays locked")
    password_min_length: PasswordLength | None = to("password_min_length", "shortest password accepted")
    argon2_time_cost: Argon2Time | None = to("argon2_time_cost", "Argon2id passes per password check")
    argon2_memory_kib: Argon2MemoryKib | None = to("argon2_memory_kib", "Argon2id memory per password check, KiB")
    jwt_key_days: Days | None = to("jwt_key_days", "days between JWT signing key rotations")
    self_registration: bool | None = to("self_registration", "anyone may register a user account")
    code_ttl: Timeout | None = to("code_ttl", "seconds an emailed verification or reset code is good for")
    require_two_factor_roles: Roles | None = to("require_two_factor_roles", "roles that must enrol TOTP")


class RateLimitsSection(Section):
    """rate_limits: requests per minute (seed 001)."""

    authenticated_per_minute: PerMinute | None = to("rate_limit_authenticated", "per key (unless it sets its "
                                                                                "own) and per signed-in account")
    anonymous_per_minute: PerMinute | None = to("rate_limit_anonymous", "per anonymous source address")
    subscription_per_minute: PerMinute | None = to("rate_limit_subscription", "per source address on the "
                                                                              "subscription URL")


class SmtpSection(Section):
    """smtp: where verification and password-reset codes are sent from (none: DATA_DIR/outbox/ files)."""

    host: str | None = to("smtp_host", "SMTP server; empty: write messages to DATA_DIR/outbox/")
    port: Port | None = to("smtp_port", "its port")
    username: str | None = to("smtp_username", "login, if the server wants one")
    password: str | None = to("smtp_password", "its password (better: $VPNFLEET_SMTP_PASSWORD)")
    sender: str | None = to("smtp_sender", "the From address")
    security: SmtpSecurity | None = to("smtp_security", "starttls, tls (implicit) or none (loopback only)")


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
    auth: AuthSection | None = None
    rate_limits: RateLimitsSection | None = None
    smtp: SmtpSection | None = None


def _setting_of(info: FieldInfo) -> str | None:
    """The ``Settings`` field a key sets (declared with ``to``); None for a mapping or a key of its own."""
    extra = info.json_schema_extra
    return str(extra["setting"]) if isinstance(extra, dict) and "setting" in extra else None
