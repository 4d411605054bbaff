"""Seed 000's V2Ray backend API, kept exactly: paths, bodies, status strings and ``{"error": "..."}`` errors.

An "instance" is a node. POST for a region that already has an active (pending/creating/running) instance
returns that instance's uuid instead of creating another.
"""

from __future__ import annotations

import json as jsonlib

from starlette.requests import Request
from starlette.routing import Route

from controller.errors import BadRequest, NotFound, ValidationFailed
from controller.http import json, path_uuid
from controller.serializers import node_to_v2ray_instance


async def list_regions(request: Request):
    """Seed 000: configured regions.
    ---
    summary: "Seed 000: list regions"
    tags: [v2ray (seed 000)]
    responses:
      200: {description: "[{region, name}]"}
    """
    return json([{"region": r.code, "name": r.name} for r in request.app.state.ctl.settings.all_regions()])


async def create_instance(request: Request):
    """Seed 000: create an instance (or get the region's active one).
    ---
    summary: "Seed 000: create instance"
    tags: [v2ray (seed 000)]
    requestBody:
      content:
        application/json:
          schema: {type: object, required: [region], properties: {region: {type: string}}}
    responses:
      200: {description: "{uuid, status}"}
      400: {description: "{error}"}
    """
    try:
        body = jsonlib.loads(await request.body() or b"null")
    except ValueError:
        raise BadRequest("invalid request body: not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("region"), str) or not body["region"]:
        raise BadRequest("invalid request body: region is required")
    try:
        node, _ = await request.app.state.ctl.nodes.create(body["region"], reuse_active=True)
    except ValidationFailed as exc:  # seed 000 reports every bad request as 400
        raise BadRequest(exc.message) from None
    request.state.created_id = node.uuid
    return json({"uuid": node.uuid, "status": node.status})


async def list_instances(request: Request):
    """Seed 000: instances not deleted, newest first.
    ---
    summary: "Seed 000: list instances"
    tags: [v2ray (seed 000)]
    responses:
      200: {description: "[{id, uuid, ec2_id, ec2_region, ec2_region_name, ec2_public_ip, status, created_at, updated_at}]"}
    """
    rows, _ = await request.app.state.ctl.nodes.list(size=100_000)
    return json([node_to_v2ray_instance(n) for n in rows])


def _uuid(request: Request) -> str:
    return path_uuid(request, "uuid", "instance not found: ")


async def get_instance(request: Request):
    """Seed 000: one instance.
    ---
    summary: "Seed 000: get instance"
    tags: [v2ray (seed 000)]
    parameters: [{name: uuid, in: path, required: true, schema: {type: string}}]
    responses:
      200: {description: "the instance"}
      404: {description: "{error: instance not found: ...}"}
    """
    ctl = request.app.state.ctl
    try:
        node = await ctl.nodes.get(_uuid(request), include_deleted=False)
    except NotFound:
        raise NotFound(f"instance not found: {request.path_params['uuid']}") from None
    return json(node_to_v2ray_instance(node))


async def delete_instance(request: Request):
    """Seed 000: delete an instance (asynchronous).
    ---
    summary: "Seed 000: delete instance"
    tags: [v2ray (seed 000)]
    parameters: [{name: uuid, in: path, required: true, schema: {type: string}}]
    responses:
      200: {description: "{status: deleting}"}
      404: {description: "{error: instance not found: ...}"}
    """
    ctl = request.app.state.ctl
    try:
        await ctl.nodes.delete(_uuid(request))
    except NotFound:
        raise NotFound(f"instance not found: {request.path_params['uuid']}") from None
    return json({"status": "deleting"})


routes = [
    Route("/api/v2ray/regions", list_regions, methods=["GET"]),
    Route("/api/v2ray/instances", create_instance, methods=["POST"]),
    Route("/api/v2ray/instances", list_instances, methods=["GET"]),
    Route("/api/v2ray/instances/{uuid}", get_instance, methods=["GET"]),
    Route("/api/v2ray/instances/{uuid}", delete_instance, methods=["DELETE"]),
]
schemas: list = []
