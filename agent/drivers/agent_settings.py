"""Component "agent": the agent's own settings (metrics interval, log level, private tcping targets)."""

from __future__ import annotations

from typing import Callable

from agent.logbuffer import LOG_LEVELS
from agent.state import Component
from protos import agent_pb2

MIN_METRICS_INTERVAL = 1
MAX_METRICS_INTERVAL = 3600


def check_metrics_interval(seconds: int) -> None:
    if not MIN_METRICS_INTERVAL <= seconds <= MAX_METRICS_INTERVAL:
        raise ValueError(
            f"metrics_interval_seconds must be {MIN_METRICS_INTERVAL}..{MAX_METRICS_INTERVAL}, got {seconds}"
        )


def check_log_level(level: str) -> None:
    if level not in LOG_LEVELS:
        raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {level!r}")


class AgentSettingsComponent(Component):
    """Applies AgentSettings. A field left at its proto3 default (0, "") means "the config file's value"."""

    name = "agent"
    field = "agent"
    capabilities = ("agent-settings",)

    def __init__(
        self,
        default_metrics_interval: int,
        default_log_level: str,
        set_metrics_interval: Callable[[int], None],
        set_log_level: Callable[[str], None],
        set_allow_private_targets: Callable[[bool], None] | None = None,
    ) -> None:
        self.default_metrics_interval = default_metrics_interval
        self.default_log_level = default_log_level
        self._set_metrics_interval = set_metrics_interval
        self._set_log_level = set_log_level
        self._set_allow_private_targets = set_allow_private_targets

    def effective(self, part: agent_pb2.AgentSettings | None) -> tuple[int, str]:
        """(metrics interval, log level) that part asks for, defaults filled in."""
        if part is None:
            return self.default_metrics_interval, self.default_log_level
        return (
            part.metrics_interval_seconds or self.default_metrics_interval,
            part.log_level or self.default_log_level,
        )

    def validate(self, part: agent_pb2.AgentSettings) -> None:
        interval, level = self.effective(part)
        check_metrics_interval(interval)
        check_log_level(level)

    async def apply(self, part: agent_pb2.AgentSettings | None) -> None:
        # Validate everything before touching anything: a bad value changes nothing, so there is
        # nothing to roll back.
        interval, level = self.effective(part)
        check_metrics_interval(interval)
        check_log_level(level)
        self._set_metrics_interval(interval)
        self._set_log_level(level)
        if self._set_allow_private_targets is not None:
            # Off unless the controller turns it on (no config-file default: it is the operator's switch).
            self._set_allow_private_targets(part is not None and part.allow_private_targets)
