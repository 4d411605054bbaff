"""Components the agent drives. Each implements agent.state.Component; build_components() is the registry.

Adding a data-plane driver (v2ray, wireguard, nodepass): write agent/drivers/<name>.py with a Component
subclass whose `field` is its DesiredState field, and append an instance in build_components().
"""

from __future__ import annotations

from typing import Callable

from agent.config import AgentConfig
from agent.drivers.agent_settings import AgentSettingsComponent
from agent.state import Component


def build_components(
    config: AgentConfig,
    set_metrics_interval: Callable[[int], None],
    set_log_level: Callable[[str], None],
) -> list[Component]:
    """Every component of this agent, in the order they are applied."""
    return [
        AgentSettingsComponent(
            default_metrics_interval=config.metrics_interval_seconds,
            default_log_level=config.log_level,
            set_metrics_interval=set_metrics_interval,
            set_log_level=set_log_level,
        ),
    ]
