"""The operations (audit) log."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from controller.http import json, page_params, paginated
from controller.serializers import operation_to_dict


async def list_operations(request: Request):
    """Every mutating API call, newest first.
    ---
    summary: Operations log
    tags: [operations]
    parameters:
      - {name: client_id, in: query, schema: {type: string}}
      - {name: target_id, in: query, schema: {type: string}, description: "e.g. a node id"}
      - {name: action, in: query, schema: {type: string}, description: "substring of 'METHOD /path'"}
      - {name: actor, in: query, schema: {type: string}}
      - {name: result, in: query, schema: {type: string, enum: [success, fail]}}
      - {name: page, in: query, schema: {type: integer, minimum: 1}}
      - {name: size, in: query, schema: {type: integer, minimum: 1, maximum: 500}}
    responses:
      200: {description: "paginated list of operations"}
    """
    page, size = page_params(request)
    q = request.query_params
    rows, total = await request.app.state.ctl.operations.list(
        client_id=q.get("client_id"), target_id=q.get("target_id"), action=q.get("action"),
        actor=q.get("actor"), result=q.get("result"), page=page, size=size)
    return json(paginated([operation_to_dict(r) for r in rows], total, page, size))


routes = [Route("/api/v1/operations", list_operations, methods=["GET"])]
schemas: list = []
