"""Health, version and fleet-wide agent settings."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request

from controller.access import requires, public
from controller.permissions import Permission as P
from controller import __version__
from controller.api import Ctl, errors
from controller.schemas.system import AgentSettings, AgentSettingsBody, Health, Version

router = APIRouter()


@router.get("/api/v1/health", dependencies=[public()], response_model=Health, response_model_exclude_none=True, tags=["system"],
            summary="Controller health")
async def health(request: Request, ctl: Ctl) -> dict[str, Any]:
    """Whether the controller is healthy (no API key needed). With a valid key or token that may read system
    details (system.view): version, connected agents and the database type too (an anonymous caller learns
    nothing to aim an attack with)."""
    principal = request.scope.get("state", {}).get("principal")  # the edge checked the credential, if any
    if principal is None or not principal.may(P.SYSTEM_VIEW):
        return {"status": "ok"}
    return {"status": "ok", "version": __version__, "agents_connected": len(ctl.hub.sessions),
            "database": ctl.settings.db_url.split(":", 1)[0]}


@router.get("/api/v1/version", dependencies=[requires(P.SYSTEM_VIEW)], response_model=Version, tags=["system"], summary="Version")
async def version() -> dict[str, Any]:
    """Controller and API version."""
    return {"version": __version__, "api_version": "v1",
            "features": ["nodes", "enrollment", "metrics", "logs", "events", "ec2", "local"]}


@router.get("/api/v1/fleet/agent-settings", dependencies=[requires(P.SYSTEM_VIEW)], response_model=AgentSettings, tags=["fleet"],
            summary="Fleet agent settings")
async def get_agent_settings(ctl: Ctl) -> dict[str, Any]:
    """The agent settings every node gets unless it overrides them."""
    return await ctl.nodes.fleet_agent_settings()


@router.put("/api/v1/fleet/agent-settings", dependencies=[requires(P.SYSTEM_EDIT)], response_model=AgentSettings, responses=errors(),
            tags=["fleet"], summary="Change fleet agent settings")
async def put_agent_settings(body: AgentSettingsBody, ctl: Ctl) -> dict[str, Any]:
    """Change the agent settings of the whole fleet; every connected agent applies them within seconds."""
    return await ctl.nodes.set_fleet_agent_settings(body)
