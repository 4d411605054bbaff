"""Health, version, regions, fleet agent settings and the operations log."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from controller.api import PageQuery
from controller.schemas.nodes import NodeAgentSettings


class Health(BaseModel):
    """What anyone may know: whether the controller is healthy. The rest needs an API key."""

    status: Literal["ok"]
    version: str | None = Field(default=None, description="with an API key only")
    agents_connected: int | None = Field(default=None, description="with an API key only")
    database: str | None = Field(default=None, description="with an API key only")


class Version(BaseModel):
    version: str
    api_version: str
    features: list[str]


class Region(BaseModel):
    region: str
    name: str
    provider: Literal["local", "ec2"]


class AgentSettingsBody(NodeAgentSettings):
    """The fleet's agent settings: what every node gets unless it overrides them (omitted: unchanged)."""


class AgentSettings(BaseModel):
    metrics_interval_seconds: int | None = None
    log_level: str | None = None


class OperationQuery(PageQuery):
    client_id: str | None = Field(default=None, min_length=1, max_length=64)
    target_id: str | None = Field(default=None, min_length=1, max_length=64, description="e.g. a node id")
    action: str | None = Field(default=None, min_length=1, max_length=200, description="substring of 'METHOD /path'")
    actor: str | None = Field(default=None, min_length=1, max_length=128)
    result: Literal["success", "fail"] | None = None


class OperationOut(BaseModel):
    """Seed 004's operation."""

    id: str
    actor: str
    action: str
    target_type: str | None
    target_id: str | None
    client_id: str | None
    payload: Any = Field(description="the request body, secrets redacted")
    result: str
    status_code: int | None
    error: str | None
    request_id: str | None
    created_at: str = Field(description="ISO 8601, UTC")
