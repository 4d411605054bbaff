"""The environment variables that override the file, each by the key it sets.

Its own module because both the loader (which applies them) and the reference (which lists them) read it.
"""

from __future__ import annotations

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
