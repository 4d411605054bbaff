"""What each node should run: fleet defaults, then the node's own overrides, rendered as DesiredState."""

from __future__ import annotations

from typing import Any

from controller.errors import ValidationFailed
from controller.models import Node
from protos import agent_pb2

FLEET_AGENT_SETTINGS_KEY = "agent_settings"
LOG_LEVELS = ("debug", "info", "warning", "error")


def validate_agent_settings(value: Any, field: str = "agent_settings") -> dict[str, Any]:
    """Check a (partial) agent settings object; returns it normalised. Raises ValidationFailed naming the field."""
    if not isinstance(value, dict):
        raise ValidationFailed(f"{field} must be an object", {field: "must be an object"})
    unknown = set(value) - {"metrics_interval_seconds", "log_level"}
    if unknown:
        name = f"{field}.{sorted(unknown)[0]}"
        raise ValidationFailed(f"unknown setting {name}", {name: "unknown setting"})
    out: dict[str, Any] = {}
    if "metrics_interval_seconds" in value:
        v = value["metrics_interval_seconds"]
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 3600:
            name = f"{field}.metrics_interval_seconds"
            raise ValidationFailed(f"{name} must be an integer from 1 to 3600", {name: "must be 1..3600"})
        out["metrics_interval_seconds"] = v
    if "log_level" in value:
        v = value["log_level"]
        if v not in LOG_LEVELS:
            name = f"{field}.log_level"
            raise ValidationFailed(f"{name} must be one of {', '.join(LOG_LEVELS)}", {name: "bad level"})
        out["log_level"] = v
    return out


def effective_agent_settings(defaults: dict[str, Any], fleet: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    return {**defaults, **fleet, **node}


def render_desired_state(node: Node, settings: dict[str, Any]) -> agent_pb2.DesiredState:
    """The node's complete desired state at its current revision (pure: no I/O)."""
    return agent_pb2.DesiredState(
        revision=node.desired_revision,
        agent=agent_pb2.AgentSettings(
            metrics_interval_seconds=int(settings["metrics_interval_seconds"]),
            log_level=str(settings["log_level"]),
        ),
    )
