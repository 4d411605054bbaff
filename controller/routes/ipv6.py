"""IPv6 prefix pools and allocations (seed 001)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from controller.http import json, path_int, page_params, paginated, query_int, read_body
from controller.ipam import json_safe_int
from controller.models import Ipv6Allocation, Ipv6Pool
from controller.serializers import iso
from controller.services.ipv6_pools import totals


class PoolBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
    prefix: str
    prefix_length: int = 64
    reserved_prefixes: int | list[str] = Field(default_factory=list)
    description: str = Field(default="", max_length=1000)
    auto_assign: bool = True


class AllocationBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pool_id: int
    client_name: str = Field(default="", max_length=128)
    description: str = Field(default="", max_length=1000)
    auto_assign: bool = True
    custom_prefix: str | None = None


def allocation_to_dict(a: Ipv6Allocation) -> dict[str, Any]:
    return {"id": a.id, "pool_id": a.pool_id, "client_name": a.assigned_to, "allocated_prefix": a.prefix,
            "status": "active", "allocated_at": iso(a.created_at), "expires_at": None, "description": a.description}


def pool_to_dict(p: Ipv6Pool, allocations: list[Ipv6Allocation]) -> dict[str, Any]:
    t = totals(p, allocations)
    return {"id": p.id, "name": p.name, "prefix": p.prefix, "prefix_length": p.prefix_length,
            "total_prefixes": json_safe_int(t["total"]), "allocated_prefixes": json_safe_int(t["used"]),
            "reserved_prefixes": p.reserved, "available_prefixes": json_safe_int(t["available"]), "status": "active",
            "description": p.description, "created_at": iso(p.created_at), "updated_at": iso(p.created_at),
            "allocations": [allocation_to_dict(a) for a in allocations]}


def _id(request: Request, what: str) -> int:
    return path_int(request, "id", f"IPv6 {what} not found: ")


async def list_pools(request: Request):
    """IPv6 prefix pools with their totals and allocations.
    ---
    summary: List IPv6 pools
    tags: [ipv6]
    parameters:
      - {name: search, in: query, schema: {type: string}}
      - {name: page, in: query, schema: {type: integer}}
      - {name: size, in: query, schema: {type: integer}}
    responses:
      200: {description: "paginated pools"}
    """
    page, size = page_params(request)
    rows, total = await request.app.state.ctl.ipv6.list_pools(request.query_params.get("search") or None, page, size)
    return json(paginated([pool_to_dict(p, a) for p, a in rows], total, page, size))


async def create_pool(request: Request):
    """Create a pool: `prefix` (e.g. 2001:db8::/48), `prefix_length` of what it hands out, `reserved_prefixes`
    (a count kept back from the start, or a list of prefixes).
    ---
    summary: Create an IPv6 pool
    tags: [ipv6]
    requestBody: {content: {application/json: {schema: {$ref: '#/components/schemas/PoolBody'}}}}
    responses:
      201: {description: "the pool"}
      409: {description: "name exists"}
      422: {description: "invalid prefix or length"}
    """
    body = await read_body(request, PoolBody)
    pool = await request.app.state.ctl.ipv6.create_pool(body.model_dump())
    request.state.created_id = str(pool.id)
    return json(pool_to_dict(pool, []), status=201)


async def get_pool(request: Request):
    """One pool.
    ---
    summary: Get an IPv6 pool
    tags: [ipv6]
    parameters: [{name: id, in: path, required: true, schema: {type: integer}}]
    responses:
      200: {description: "the pool"}
      404: {description: "unknown pool"}
    """
    pool, allocs = await request.app.state.ctl.ipv6.get_pool(_id(request, "pool"))
    return json(pool_to_dict(pool, allocs))


async def delete_pool(request: Request):
    """Delete a pool without allocations.
    ---
    summary: Delete an IPv6 pool
    tags: [ipv6]
    parameters: [{name: id, in: path, required: true, schema: {type: integer}}]
    responses:
      204: {description: "deleted"}
      409: {description: "the pool has allocations"}
    """
    await request.app.state.ctl.ipv6.delete_pool(_id(request, "pool"))
    return PlainTextResponse("", status_code=204)


async def list_allocations(request: Request):
    """Allocated prefixes.
    ---
    summary: List IPv6 allocations
    tags: [ipv6]
    parameters:
      - {name: pool_id, in: query, schema: {type: integer}}
      - {name: page, in: query, schema: {type: integer}}
      - {name: size, in: query, schema: {type: integer}}
    responses:
      200: {description: "paginated allocations"}
    """
    page, size = page_params(request)
    pool_id = query_int(request, "pool_id", 0, 0, 2**31) or None
    rows, total = await request.app.state.ctl.ipv6.list_allocations(pool_id, page, size)
    return json(paginated([allocation_to_dict(a) for a in rows], total, page, size))


async def create_allocation(request: Request):
    """Allocate the next free prefix of a pool (or `custom_prefix`, checked for overlap).
    ---
    summary: Allocate an IPv6 prefix
    tags: [ipv6]
    requestBody: {content: {application/json: {schema: {$ref: '#/components/schemas/AllocationBody'}}}}
    responses:
      201: {description: "the allocation"}
      409: {description: "custom_prefix already allocated"}
      422: {description: "pool exhausted or bad prefix"}
    """
    body = await read_body(request, AllocationBody)
    alloc = await request.app.state.ctl.ipv6.allocate(body.model_dump())
    request.state.created_id = str(alloc.id)
    return json(allocation_to_dict(alloc), status=201)


async def delete_allocation(request: Request):
    """Release an allocated prefix (it can be handed out again).
    ---
    summary: Release an IPv6 allocation
    tags: [ipv6]
    parameters: [{name: id, in: path, required: true, schema: {type: integer}}]
    responses:
      204: {description: "released"}
      404: {description: "unknown allocation"}
    """
    await request.app.state.ctl.ipv6.release(_id(request, "allocation"))
    return PlainTextResponse("", status_code=204)


routes = [
    Route("/api/v1/ipv6/pools", list_pools, methods=["GET"]),
    Route("/api/v1/ipv6/pools", create_pool, methods=["POST"]),
    Route("/api/v1/ipv6/pools/{id}", get_pool, methods=["GET"]),
    Route("/api/v1/ipv6/pools/{id}", delete_pool, methods=["DELETE"]),
    Route("/api/v1/ipv6/allocations", list_allocations, methods=["GET"]),
    Route("/api/v1/ipv6/allocations", create_allocation, methods=["POST"]),
    Route("/api/v1/ipv6/allocations/{id}", delete_allocation, methods=["DELETE"]),
]
schemas = [PoolBody, AllocationBody]
