"""Health, version and fleet-wide agent settings."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from starlette.requests import Request
from starlette.routing import Route

from controller import __version__
from controller.http import json, read_body


class AgentSettingsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metrics_interval_seconds: int | None = None
    log_level: str | None = None


async def health(request: Request):
    """Liveness and readiness of the controller (no API key needed).
    ---
    summary: Controller health
    tags: [system]
    security: []
    responses:
      200: {description: "status, version, connected agents"}
    """
    ctl = request.app.state.ctl
    return json({"status": "ok", "version": __version__, "agents_connected": len(ctl.hub.sessions),
                 "database": ctl.settings.db_url.split(":", 1)[0]})


async def version(request: Request):
    """Controller and API version.
    ---
    summary: Version
    tags: [system]
    responses:
      200: {description: "version, api_version, features"}
    """
    return json({"version": __version__, "api_version": "v1",
                 "features": ["nodes", "enrollment", "metrics", "logs", "events", "ec2", "local"]})


async def get_agent_settings(request: Request):
    """The agent settings every node gets unless it overrides them.
    ---
    summary: Fleet agent settings
    tags: [fleet]
    responses:
      200: {description: "metrics_interval_seconds, log_level"}
    """
    return json(await request.app.state.ctl.nodes.fleet_agent_settings())


async def put_agent_settings(request: Request):
    """Change the agent settings of the whole fleet; every connected agent applies them within seconds.
    ---
    summary: Change fleet agent settings
    tags: [fleet]
    requestBody:
      content:
        application/json:
          schema: {$ref: '#/components/schemas/AgentSettingsBody'}
    responses:
      200: {description: "the new effective settings"}
      422: {description: "invalid value (the field is named)"}
    """
    body = await read_body(request, AgentSettingsBody)
    values = body.model_dump(exclude_none=True)
    return json(await request.app.state.ctl.nodes.set_fleet_agent_settings(values))


routes = [
    Route("/api/v1/health", health, methods=["GET"]),
    Route("/api/v1/version", version, methods=["GET"]),
    Route("/api/v1/fleet/agent-settings", get_agent_settings, methods=["GET"]),
    Route("/api/v1/fleet/agent-settings", put_agent_settings, methods=["PUT"]),
]
schemas = [AgentSettingsBody]
