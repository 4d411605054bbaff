"""Components the agent drives. Each implements agent.state.Component; build_components() is the registry.

Adding a data-plane driver (v2ray, wireguard, nodepass): write agent/drivers/<name>.py with a Component
subclass whose `field` is its DesiredState field, and append an instance in build_components().
"""

from __future__ import annotations

from typing import Callable

from agent.config import AgentConfig
from agent.drivers.agent_settings import AgentSettingsComponent
from agent.drivers.v2ray import V2RayComponent
from agent.drivers.wireguard import WireGuardComponent
from agent.state import Component
from agent.telemetry import TrafficSource

#: push(level, source, message): a line for the live logs (agent.logbuffer.LogBuffer.push).
LogPush = Callable[[str, str, str], None]


def build_components(
    config: AgentConfig,
    set_metrics_interval: Callable[[int], None],
    set_log_level: Callable[[str], None],
    log_push: LogPush | None = None,
    add_traffic_source: Callable[[TrafficSource], None] | None = None,
    set_allow_private_targets: Callable[[bool], None] | None = None,
) -> list[Component]:
    """Every component of this agent, in the order they are applied.

    log_push lets drivers stream their own lines (source "v2ray", "wireguard", ...); without it they go to the
    agent's logger. add_traffic_source registers a driver's per-user/per-peer traffic with the telemetry loop.
    set_allow_private_targets receives AgentSettings.allow_private_targets (for tcping) at every apply.
    """
    v2ray = V2RayComponent(state_dir=config.state_dir, log_push=log_push)
    wireguard = WireGuardComponent(state_dir=config.state_dir, log_push=log_push)
    if add_traffic_source is not None:
        add_traffic_source(v2ray)
        add_traffic_source(wireguard)
    return [
        AgentSettingsComponent(
            default_metrics_interval=config.metrics_interval_seconds,
            default_log_level=config.log_level,
            set_metrics_interval=set_metrics_interval,
            set_log_level=set_log_level,
            set_allow_private_targets=set_allow_private_targets,
        ),
        v2ray,
        wireguard,
    ]
