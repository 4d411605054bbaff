"""Database tables. Names say what a row is; business rules live in controller/services/."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, false as sa_false, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from controller import reality


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def new_uuid() -> str:
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            value = value.astimezone(dt.timezone.utc)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value


class Base(DeclarativeBase):
    pass


class Node(Base):
    """A VPN node: one machine from a provider, running one agent."""

    __tablename__ = "nodes"
    #: ids are never reused after a delete (SQLite AUTOINCREMENT; migration 0009)
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(128))
    region: Mapped[str] = mapped_column(String(64), index=True)
    region_name: Mapped[str] = mapped_column(String(128), default="")
    provider: Mapped[str] = mapped_column(String(16))
    instance_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    public_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    private_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: lifecycle: pending, creating, running, stopping, stopped, starting, deleting, deleted, error
    status: Mapped[str] = mapped_column(String(16), index=True)
    #: why the node is in its status (errors, things done outside vpnfleet)
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    status_changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    is_deleted: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    # -- agent ---------------------------------------------------------------------------------------------
    #: SHA-256 of the node's CURRENT certificate (DER): the only one Agent.Connect accepts
    cert_fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    enrolled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: serial (hex) and expiry of the current certificate; NULL for a certificate issued before they were
    #: recorded (filled in at its first Connect; controller/services/node_certificates.py)
    cert_serial: Mapped[str | None] = mapped_column(String(40), nullable=True)
    cert_not_after: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: when the current certificate was renewed or re-issued by enrollment
    cert_issued_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: the certificate a Renew just replaced: accepted by Renew only (an agent whose answer was lost asks again),
    #: never by Connect; cleared when the new one first connects
    cert_previous_fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: set by revoke: no certificate of the node is accepted until it enrolls again (re-enrollment)
    cert_revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    agent_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    hostname: Mapped[str | None] = mapped_column(String(255), nullable=True)
    boot_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    capabilities: Mapped[list[str]] = mapped_column(JSON, default=list)
    session_epoch: Mapped[int] = mapped_column(BigInteger, default=0)
    desired_revision: Mapped[int] = mapped_column(BigInteger, default=1)
    applied_revision: Mapped[int] = mapped_column(BigInteger, default=0)
    #: last AppliedReport's components: [{name, state, error, config_hash}]
    component_status: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    #: per-node overrides of the agent settings ({metrics_interval_seconds, log_level})
    agent_settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: highest telemetry batch sequence durably stored (exactly-once ingestion)
    telemetry_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    #: telemetry samples the agent reported as dropped (spool overflow)
    telemetry_dropped: Mapped[int] = mapped_column(BigInteger, default=0)
    #: telemetry entries the controller refused from the node: usage of subscribers or peers that are not the
    #: node's, values beyond its link, samples stamped in the future (controller/services/telemetry.py)
    telemetry_rejected: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")

    # -- data plane ----------------------------------------------------------------------------------------
    #: the proxy core: "xray" or "v2ray" (nodes from before cores are "v2ray" until their next apply, see
    #: controller.services.desired_state); NodeService sets it from v2ray.core or the API
    core: Mapped[str] = mapped_column(String(8), default="xray", server_default="v2ray")
    #: V2Ray inbounds subscribers connect to: [{tag, protocol, port, listen, profile}], the node's profile set
    #: for its core (controller.services.desired_state). Entries without "profile" (or None: the settings'
    #: ports) are from before cores: the node moves to the new profiles on its next apply.
    v2ray_inbounds: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    #: every port the node's machine set aside, per profile slot: {slot: {port, listen}} (a core switch or
    #: enabling v2ray.tls uses them); None for nodes from before cores
    v2ray_ports: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    #: the node's own REALITY X25519 key pair (base64url, no padding). The private key is a secret: it leaves
    #: the controller only in the node's desired state (mTLS), never in API output, events, logs or the audit log
    reality_private_key: Mapped[str] = mapped_column(String(64), default=lambda: reality.new_keypair()[0])
    #: (by default the public key of the private key the same INSERT writes: the two always pair)
    reality_public_key: Mapped[str] = mapped_column(
        String(64), default=lambda ctx: reality.public_key_of(ctx.get_current_parameters()["reality_private_key"]))
    #: REALITY short ids (hex); the first is what subscriptions carry (stable per node)
    reality_short_ids: Mapped[list[str]] = mapped_column(JSON, default=lambda: [reality.new_short_id()])
    #: per-node REALITY target ("host:port") and server names; None: the region's or the fleet's
    reality_dest: Mapped[str | None] = mapped_column(String(300), nullable=True)
    reality_server_names: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    #: WebSocket path of the node's ws-tls inbounds (random per node)
    ws_path: Mapped[str] = mapped_column(String(64), default=lambda: reality.new_ws_path())


class EnrollmentToken(Base):
    """A one-time, expiring token that lets an agent enroll as its node. Only the hash is stored."""

    __tablename__ = "enrollment_tokens"
    #: ids are never reused after a delete (SQLite AUTOINCREMENT; migration 0009)
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    node_uuid: Mapped[str] = mapped_column(ForeignKey("nodes.uuid", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Account(Base):
    """A person who signs in (seed 001's "user"): an operator (admin, manager, viewer) or a subscriber/customer
    (user). Roles and permissions are named in controller.permissions; business rules live in
    controller/services/accounts.py and controller/services/sessions.py."""

    __tablename__ = "accounts"
    __table_args__ = (Index("uq_accounts_username_lower", "username_lower", unique=True),
                      {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64))
    #: lower(username): Alice and alice are one account (kept by the service, indexed unique)
    username_lower: Mapped[str] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(254), nullable=True, unique=True)
    full_name: Mapped[str] = mapped_column(String(128), default="")
    #: "admin", "manager", "viewer" or "user" (controller.permissions.Role)
    role: Mapped[str] = mapped_column(String(16), index=True)
    #: "active", "inactive" (registered, not yet verified; or switched off) or "suspended"
    status: Mapped[str] = mapped_column(String(16), index=True, default="active")
    #: None: the role's default set; else a subset of it (an account is narrowed, never widened)
    permissions: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    #: Argon2id (controller.passwords); None: no password login (e.g. made by the migration, key only)
    password_hash: Mapped[str | None] = mapped_column(String(256), nullable=True)
    #: the account must set a new password at its next login (an admin reset it)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    two_factor_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    #: the TOTP secret (base32); set at enrolment, used once two_factor_enabled
    totp_secret: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: the last TOTP time step accepted: a code is good once (no replay within its window)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_login: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    login_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ApiKey(Base):
    """An API key of an account (seed 001's scoped key). Only a SHA-256 hash of the key is stored; ``prefix``
    (its first characters) is what lists show. A key never exceeds its account's permissions."""

    __tablename__ = "api_keys"
    #: ids are never reused after a delete (SQLite AUTOINCREMENT; migration 0009)
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: the key made at first start (the admin account's key, from before accounts)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    #: the account the key acts as (migration 0011 gives the old admin key to the admin account)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), nullable=True,
                                                   index=True)
    #: the key's first characters, shown in lists (the key itself is shown once, at creation)
    prefix: Mapped[str] = mapped_column(String(16), default="", server_default="")
    #: "read" (view permissions only), "write" or "full" (seed 001)
    access_level: Mapped[str] = mapped_column(String(8), default="full", server_default="full")
    #: None: the account's permissions; else a subset of them
    permissions: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    #: None: any address; else CIDRs the key may be used from
    allowed_ips: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    #: None: any path; else path globs ("/api/v1/wireguard/*") the key may call
    allowed_endpoints: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    #: None: the account's limit (rate_limits.authenticated_per_minute)
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer, nullable=True)
    burst_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    last_used: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AuthSession(Base):
    """One sign-in: the family of its rotating refresh tokens. Logging out, or presenting a spent refresh token
    of the family (a stolen copy), revokes it, and with it every access token it issued."""

    __tablename__ = "auth_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    remember_me: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: the family ends here whatever its tokens say (remember_me: longer)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    #: why: "logout", "refresh_reuse", "password_changed", "account_changed", "admin"
    revoked_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    user_agent: Mapped[str] = mapped_column(String(256), default="")
    source: Mapped[str] = mapped_column(String(64), default="")


class RefreshToken(Base):
    """One refresh token of a session: single use (``used_at``), only its SHA-256 hash stored."""

    __tablename__ = "refresh_tokens"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RecoveryCode(Base):
    """A one-time 2FA recovery code, stored as SHA-256: 80 random bits cannot be guessed offline, and a plain hash
    lets a code be looked up instead of checked against each of the ten with a slow KDF."""

    __tablename__ = "recovery_codes"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AccountCode(Base):
    """A code sent to an account's email: to verify the address ("verify") or to reset the password ("reset").
    Stored hashed, single use, expiring, with bounded attempts."""

    __tablename__ = "account_codes"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(8))
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)


class Operation(Base):
    """One audit log entry: a mutating API call, who made it and how it ended."""

    __tablename__ = "operations"
    __table_args__ = (Index("ix_operations_target", "target_type", "target_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    #: the account ("alice"), its key ("alice (key monitoring)"), "scheduler", "system" or "migration"
    actor: Mapped[str] = mapped_column(String(160))
    action: Mapped[str] = mapped_column(String(128))
    target_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    target_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    client_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    payload: Mapped[Any] = mapped_column(JSON, nullable=True)
    #: "success" or "fail"
    result: Mapped[str] = mapped_column(String(8))
    status_code: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    request_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class MetricBucket(Base):
    """One minute of a node's machine metrics, rolled up from the agent's samples."""

    __tablename__ = "metric_buckets"

    node_uuid: Mapped[str] = mapped_column(ForeignKey("nodes.uuid", ondelete="CASCADE"), primary_key=True)
    bucket_start: Mapped[dt.datetime] = mapped_column(UTCDateTime, primary_key=True)
    samples: Mapped[int] = mapped_column(Integer, default=0)
    cpu_sum: Mapped[float] = mapped_column(Float, default=0.0)
    cpu_max: Mapped[float] = mapped_column(Float, default=0.0)
    mem_used_sum: Mapped[float] = mapped_column(Float, default=0.0)
    mem_total: Mapped[int] = mapped_column(BigInteger, default=0)
    swap_used_sum: Mapped[float] = mapped_column(Float, default=0.0)
    swap_total: Mapped[int] = mapped_column(BigInteger, default=0)
    disk_used: Mapped[int] = mapped_column(BigInteger, default=0)
    disk_total: Mapped[int] = mapped_column(BigInteger, default=0)
    net_rx: Mapped[int] = mapped_column(BigInteger, default=0)
    net_tx: Mapped[int] = mapped_column(BigInteger, default=0)
    load1_sum: Mapped[float] = mapped_column(Float, default=0.0)
    uptime: Mapped[int] = mapped_column(BigInteger, default=0)


class FleetSetting(Base):
    """Fleet-wide settings (key -> JSON), e.g. the agent settings every node gets unless overridden."""

    __tablename__ = "fleet_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    #: bumped on every change; part of every node's desired revision
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class WireguardServer(Base):
    """A WireGuard interface on a node (seed 001's "server")."""

    __tablename__ = "wireguard_servers"
    __table_args__ = (
        Index("uq_wireguard_servers_node_interface", "node_uuid", "interface", unique=True),
        Index("uq_wireguard_servers_node_port", "node_uuid", "listen_port", unique=True),
        {"sqlite_autoincrement": True},  # ids never reused after a delete (migration 0009)
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    node_uuid: Mapped[str] = mapped_column(ForeignKey("nodes.uuid", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    interface: Mapped[str] = mapped_column(String(15))
    listen_port: Mapped[int] = mapped_column(Integer)
    #: the interface's own address with the subnet, e.g. "10.8.0.1/24"
    ipv4_address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ipv6_address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    private_key: Mapped[str] = mapped_column(String(64))
    public_key: Mapped[str] = mapped_column(String(64))
    dns_servers: Mapped[list[str]] = mapped_column(JSON, default=list)
    mtu: Mapped[int] = mapped_column(Integer, default=1420)
    persistent_keepalive: Mapped[int] = mapped_column(Integer, default=25)
    #: AllowedIPs written into client configs (what clients route through the tunnel)
    allowed_ips: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: forward and masquerade client traffic out of the node (internet egress)
    nat: Mapped[bool] = mapped_column(Boolean, default=True)
    #: peers may reach each other through the node (else the egress policy drops the interface's own subnets)
    peer_to_peer: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    #: host clients dial; default: the node's public IP
    endpoint_host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    auto_start: Mapped[bool] = mapped_column(Boolean, default=True)
    #: desired: "running" (on the node) or "stopped" (removed from the node)
    status: Mapped[str] = mapped_column(String(16), default="stopped")
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class WireguardClient(Base):
    """A peer of a WireGuard server (seed 001's "client")."""

    __tablename__ = "wireguard_clients"
    __table_args__ = (
        Index("uq_wireguard_clients_server_key", "server_id", "public_key", unique=True),
        Index("uq_wireguard_clients_server_v4", "server_id", "ipv4_address", unique=True),
        Index("uq_wireguard_clients_server_v6", "server_id", "ipv6_address", unique=True),
        {"sqlite_autoincrement": True},  # ids never reused after a delete (migration 0009)
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    server_id: Mapped[int] = mapped_column(ForeignKey("wireguard_servers.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    ipv4_address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ipv6_address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    public_key: Mapped[str] = mapped_column(String(64))
    #: None when the peer brought its own key pair (only its public key is known)
    private_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    preshared_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    allowed_ips: Mapped[list[str]] = mapped_column(JSON, default=list)
    dns_servers: Mapped[list[str]] = mapped_column(JSON, default=list)
    persistent_keepalive: Mapped[int] = mapped_column(Integer, default=25)
    #: "active" or "disabled"
    status: Mapped[str] = mapped_column(String(16), default="active")
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    description: Mapped[str] = mapped_column(Text, default="")
    #: the account that owns the peer (a ``user`` sees only its own); None: operators' only
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"), nullable=True,
                                                 index=True)
    last_handshake_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    bytes_received: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_sent: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class WireguardUsage(Base):
    """One hour of one WireGuard peer's transfer (bytes the node received from / sent to it)."""

    __tablename__ = "wireguard_usage"

    client_id: Mapped[int] = mapped_column(ForeignKey("wireguard_clients.id", ondelete="CASCADE"), primary_key=True)
    hour_start: Mapped[dt.datetime] = mapped_column(UTCDateTime, primary_key=True)
    rx_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    tx_bytes: Mapped[int] = mapped_column(BigInteger, default=0)


class Ipv6Pool(Base):
    """A pool of IPv6 prefixes to hand out (seed 001)."""

    __tablename__ = "ipv6_pools"
    #: ids are never reused after a delete (SQLite AUTOINCREMENT; migration 0009)
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(64))
    #: default length of the prefixes allocated from this pool
    prefix_length: Mapped[int] = mapped_column(Integer)
    reserved: Mapped[list[str]] = mapped_column(JSON, default=list)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Ipv6Allocation(Base):
    """A prefix allocated from a pool."""

    __tablename__ = "ipv6_allocations"
    __table_args__ = (Index("uq_ipv6_allocations_pool_prefix", "pool_id", "prefix", unique=True),
                      {"sqlite_autoincrement": True})  # ids never reused after a delete (migration 0009)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("ipv6_pools.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(64))
    assigned_to: Mapped[str] = mapped_column(String(128), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Subscriber(Base):
    """A VPN subscriber (seed 004's "client"): one set of V2Ray credentials valid on every node they may use."""

    __tablename__ = "clients"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    #: unique regardless of case (uq_clients_username_lower below; migration 0008)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    #: the legacy VMess/VLESS id shared by every node (subscribers made before per-node ids); nodes carry it only
    #: while shared_credential is set
    credential_uuid: Mapped[str] = mapped_column(String(36))
    #: the secret every node's own id is derived from (controller.credentials); replaced by a rotation
    credential_secret: Mapped[str] = mapped_column(String(64))
    #: credential_uuid still works on every node (until the cut-over: the next rotation, or the fleet's)
    shared_credential: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    #: the secret in the subscription URL (/sub/<short_uuid>); replaced by a rotation
    short_uuid: Mapped[str] = mapped_column(String(32), unique=True)
    #: "active", "blocked" (by an operator), "expired" or "limited" (by the schedule)
    status: Mapped[str] = mapped_column(String(16), index=True, default="active")
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    #: None: no data limit
    data_limit_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: transfer since the last usage reset (drives the data limit)
    used_upload_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    used_download_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    usage_reset_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: where the subscriber may connect; both None: every node
    node_ids: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    regions: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    #: the account that owns the subscriber (a ``user`` sees only its own); None: operators' only
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"), nullable=True,
                                                 index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    #: optimistic lock: every ORM UPDATE/DELETE of the row checks and bumps it, so a change based on a stale
    #: read fails (StaleDataError) instead of overwriting what another change committed meanwhile; the
    #: schedule's conditional UPDATE bumps it too (SubscriberService)
    version: Mapped[int] = mapped_column(Integer, server_default="1")

    __mapper_args__ = {"version_id_col": version}
    # Alice and alice are one name: to people, in apps' profile titles and in the CLI's look-up by name
    __table_args__ = (Index("uq_clients_username_lower", func.lower(username), unique=True),)


class SubscriberUsage(Base):
    """One hour of one subscriber's V2Ray transfer on one node."""

    __tablename__ = "client_usage"

    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True)
    node_uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    hour_start: Mapped[dt.datetime] = mapped_column(UTCDateTime, primary_key=True)
    upload_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    download_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
