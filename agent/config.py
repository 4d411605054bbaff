"""The agent's configuration file: the one definition shared by the agent and the controller.

The controller renders it (into cloud-init user data, or into a local node's state directory) and the agent
reads it at start. Keep this module free of heavy imports: the controller imports it too.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

#: Name the controller's gRPC certificate carries; agents verify it against the pinned CA, so the
#: controller can be reached under any address without re-issuing its certificate.
CONTROLLER_TLS_NAME = "vpnfleet-controller"

#: Where cloud-init writes the config file on a real node.
DEFAULT_CONFIG_PATH = "/etc/vpnfleet/agent.yaml"


#: Log levels the agent accepts (config file and desired state alike).
LOG_LEVEL_NAMES = ("debug", "info", "warning", "error")


class ConfigError(ValueError):
    """The agent configuration file is missing something or has a bad value."""


@dataclasses.dataclass
class AgentConfig:
    """Everything an agent needs to find, trust and join its controller."""

    #: "host:port" of the controller's mutual-TLS gRPC endpoint (Agent.Connect).
    grpc_addr: str
    #: "host:port" of the controller's server-TLS enrollment endpoint (Enrollment.Enroll).
    enroll_addr: str
    #: PEM of the controller's CA certificate: the only CA the agent trusts.
    ca_cert_pem: str
    #: Where the agent keeps its key, certificate, applied state and telemetry spool.
    state_dir: str = "/var/lib/vpnfleet-agent"
    #: One-time enrollment token; unused once the agent holds a certificate.
    enrollment_token: str = ""
    #: TLS name expected on the controller's certificate.
    tls_server_name: str = CONTROLLER_TLS_NAME
    #: Human name of the node (for logs); the identity is the certificate.
    node_name: str = ""
    #: Initial log level until the desired state says otherwise.
    log_level: str = "info"
    #: Seconds between telemetry samples until the desired state says otherwise.
    metrics_interval_seconds: int = 10
    #: Most telemetry batches kept on disk while the controller is unreachable.
    spool_max_batches: int = 10_000
    #: Most log lines buffered in memory while the controller is unreachable.
    log_buffer_lines: int = 5_000
    #: Longest wait between reconnect attempts (exponential backoff with full jitter up to this).
    reconnect_max_seconds: float = 30.0

    def to_yaml(self) -> str:
        """Serialise for writing to DEFAULT_CONFIG_PATH."""
        return yaml.safe_dump(dataclasses.asdict(self), sort_keys=False)

    @classmethod
    def from_dict(cls, data: Any) -> "AgentConfig":
        if not isinstance(data, dict):
            raise ConfigError("agent config must be a mapping")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown agent config keys: {', '.join(unknown)}")
        for required in ("grpc_addr", "enroll_addr", "ca_cert_pem"):
            if not data.get(required):
                raise ConfigError(f"agent config needs '{required}'")
        config = cls(**data)
        config.validate()
        return config

    def validate(self) -> None:
        """Check value ranges (the same ones the agent's settings component enforces at run time)."""
        if self.log_level not in LOG_LEVEL_NAMES:
            raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVEL_NAMES)}, got {self.log_level!r}")
        for name, low, high in (
            ("metrics_interval_seconds", 1, 3600),
            ("spool_max_batches", 1, 10_000_000),
            ("log_buffer_lines", 1, 10_000_000),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ConfigError(f"{name} must be an integer {low}..{high}, got {value!r}")
        if not isinstance(self.reconnect_max_seconds, (int, float)) or not 0.1 <= self.reconnect_max_seconds <= 3600:
            raise ConfigError(f"reconnect_max_seconds must be 0.1..3600, got {self.reconnect_max_seconds!r}")
        if "BEGIN CERTIFICATE" not in self.ca_cert_pem:
            raise ConfigError("ca_cert_pem must be a PEM certificate")

    @classmethod
    def load(cls, path: str | Path) -> "AgentConfig":
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read agent config {path}: {exc.strerror}") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"agent config {path} is not valid YAML: {exc}") from exc
        return cls.from_dict(data)
