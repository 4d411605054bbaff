"""Regions nodes can be created in (from the settings: ``local`` plus aws.regions)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from controller.http import json


async def list_regions(request: Request):
    """Configured regions.
    ---
    summary: List regions
    tags: [regions]
    responses:
      200: {description: "[{region, name, provider}]"}
    """
    regions = request.app.state.ctl.settings.all_regions()
    return json([{"region": r.code, "name": r.name, "provider": r.provider} for r in regions])


routes = [Route("/api/v1/regions", list_regions, methods=["GET"])]
schemas: list = []
