"""Seed 000's V2Ray backend API, kept exactly: paths, bodies, status strings and ``{"error": "..."}`` errors.

An "instance" is a node. POST for a region that already has an active (pending/creating/running) instance
returns that instance's uuid instead of creating another. Every bad input is a 400 (the edge maps request
validation under /api/v2ray to seed 000's 400 and its error shape).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from starlette.requests import Request

from controller.access import requires
from controller.permissions import Permission as P
from controller.api import Ctl, errors, uuid_or_404, uuid_path
from controller.errors import BadRequest, NotFound, ValidationFailed
from controller.schemas.nodes import CREATION_THROTTLED, NodeCreate
from controller.schemas.v2ray_compat import CompatRegion, Instance, InstanceCreate, InstanceCreated, InstanceDeleted
from controller.serializers import node_to_v2ray_instance

router = APIRouter(tags=["v2ray (seed 000)"])

InstanceUuid = Annotated[str, uuid_path("the instance's UUID")]
#: the instances a list returns at most (every node of a real fleet)
LIST_LIMIT = 100_000


def _instance_id(raw: str) -> str:
    return uuid_or_404(raw, "instance not found: ")


@router.get("/api/v2ray/regions", dependencies=[requires(P.NODES_VIEW)], response_model=list[CompatRegion], summary="Seed 000: list regions")
async def list_regions(ctl: Ctl) -> list[dict[str, Any]]:
    """Seed 000: configured regions."""
    return [{"region": r.code, "name": r.name} for r in ctl.settings.all_regions()]


@router.post("/api/v2ray/instances", dependencies=[requires(P.NODES_EDIT)], response_model=InstanceCreated, responses={
    **errors(409, compat=True), 429: {**errors(429, compat=True)[429], **CREATION_THROTTLED}},
             summary="Seed 000: create instance")
async def create_instance(body: InstanceCreate, request: Request, ctl: Ctl) -> Any:
    """Seed 000: create an instance (or get the region's active one). 400: no region, or an unknown one; 409:
    the region is at its node quota (nodes.max_per_region); 429: too many nodes created in the region this
    minute (nodes.creations_per_minute; see Retry-After)."""
    try:
        node, _ = await ctl.nodes.create(NodeCreate(region=body.region), reuse_active=True)
    except ValidationFailed as exc:  # seed 000 reports every bad request as 400
        raise BadRequest(exc.message) from None
    request.state.created_id = node.uuid
    return {"uuid": node.uuid, "status": node.status}


@router.get("/api/v2ray/instances", dependencies=[requires(P.NODES_VIEW)], response_model=list[Instance], summary="Seed 000: list instances")
async def list_instances(ctl: Ctl) -> list[dict[str, Any]]:
    """Seed 000: instances not deleted, newest first."""
    rows, _ = await ctl.nodes.list(size=LIST_LIMIT)
    return [node_to_v2ray_instance(n) for n in rows]


@router.get("/api/v2ray/instances/{uuid}", dependencies=[requires(P.NODES_VIEW)], response_model=Instance, responses=errors(404, compat=True),
            summary="Seed 000: get instance")
async def get_instance(uuid: InstanceUuid, ctl: Ctl) -> dict[str, Any]:
    """Seed 000: one instance (not a deleted one)."""
    try:
        node = await ctl.nodes.get(_instance_id(uuid), include_deleted=False)
    except NotFound:
        raise NotFound(f"instance not found: {uuid}") from None
    return node_to_v2ray_instance(node)


@router.delete("/api/v2ray/instances/{uuid}", dependencies=[requires(P.NODES_EDIT)], response_model=InstanceDeleted, responses=errors(404, compat=True),
               summary="Seed 000: delete instance")
async def delete_instance(uuid: InstanceUuid, ctl: Ctl) -> dict[str, Any]:
    """Seed 000: delete an instance (asynchronous)."""
    try:
        await ctl.nodes.delete(_instance_id(uuid))
    except NotFound:
        raise NotFound(f"instance not found: {uuid}") from None
    return {"status": "deleting"}
