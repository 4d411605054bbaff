"""Regions nodes can be created in (from the settings: ``local`` plus aws.regions)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from controller.access import requires
from controller.permissions import Permission as P
from controller.api import Ctl
from controller.schemas.system import Region

router = APIRouter()


@router.get("/api/v1/regions", dependencies=[requires(P.NODES_VIEW)], response_model=list[Region], tags=["regions"], summary="List regions")
async def list_regions(ctl: Ctl) -> list[dict[str, Any]]:
    """Configured regions."""
    return [{"region": r.code, "name": r.name, "provider": r.provider} for r in ctl.settings.all_regions()]
