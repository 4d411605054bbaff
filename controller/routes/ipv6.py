"""IPv6 prefix pools and allocations (seed 001)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response

from controller.access import requires
from controller.permissions import Permission as P
from controller.api import Ctl, IntId, Page, errors, page_of
from controller.ipam import json_safe_int
from controller.models import Ipv6Allocation, Ipv6Pool
from controller.schemas.ipv6 import AllocationBody, AllocationOut, AllocationQuery, PoolBody, PoolOut, PoolQuery
from controller.serializers import iso
from controller.services.ipv6_pools import totals

router = APIRouter(tags=["ipv6"])

_NO_CONTENT: dict[int | str, dict[str, Any]] = {204: {"description": "done; no body"}}


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


@router.get("/api/v1/ipv6/pools", dependencies=[requires(P.IPV6_VIEW)], response_model=Page[PoolOut], summary="List IPv6 pools")
async def list_pools(q: Annotated[PoolQuery, Query()], ctl: Ctl) -> dict[str, Any]:
    """IPv6 prefix pools with their totals and allocations."""
    rows, total = await ctl.ipv6.list_pools(q.search, q.page, q.size)
    return page_of([pool_to_dict(p, a) for p, a in rows], total, q)


@router.post("/api/v1/ipv6/pools", dependencies=[requires(P.IPV6_EDIT)], status_code=201, response_model=PoolOut, responses=errors(409),
             summary="Create an IPv6 pool")
async def create_pool(body: PoolBody, request: Request, ctl: Ctl) -> dict[str, Any]:
    """Create a pool: `prefix` (e.g. 2001:db8::/48), `prefix_length` of what it hands out, `reserved_prefixes`
    (a count kept back from the start, or a list of prefixes). 409: the name exists; 422: an invalid prefix or
    length."""
    pool = await ctl.ipv6.create_pool(body)
    request.state.created_id = str(pool.id)
    return pool_to_dict(pool, [])


@router.get("/api/v1/ipv6/pools/{id}", dependencies=[requires(P.IPV6_VIEW)], response_model=PoolOut, responses=errors(404), summary="Get an IPv6 pool")
async def get_pool(id: IntId, ctl: Ctl) -> dict[str, Any]:
    """One pool."""
    pool, allocs = await ctl.ipv6.get_pool(id)
    return pool_to_dict(pool, allocs)


@router.delete("/api/v1/ipv6/pools/{id}", dependencies=[requires(P.IPV6_EDIT)], status_code=204, response_class=Response,
               responses={**_NO_CONTENT, **errors(404, 409)}, summary="Delete an IPv6 pool")
async def delete_pool(id: IntId, ctl: Ctl) -> Response:
    """Delete a pool without allocations (409 while it has some)."""
    await ctl.ipv6.delete_pool(id)
    return Response(status_code=204)


@router.get("/api/v1/ipv6/allocations", dependencies=[requires(P.IPV6_VIEW)], response_model=Page[AllocationOut], summary="List IPv6 allocations")
async def list_allocations(q: Annotated[AllocationQuery, Query()], ctl: Ctl) -> dict[str, Any]:
    """Allocated prefixes."""
    rows, total = await ctl.ipv6.list_allocations(q.pool_id, q.page, q.size)
    return page_of([allocation_to_dict(a) for a in rows], total, q)


@router.post("/api/v1/ipv6/allocations", dependencies=[requires(P.IPV6_EDIT)], status_code=201, response_model=AllocationOut, responses=errors(404, 409),
             summary="Allocate an IPv6 prefix")
async def create_allocation(body: AllocationBody, request: Request, ctl: Ctl) -> dict[str, Any]:
    """Allocate the next free prefix of a pool (or `custom_prefix`, checked for overlap). 404: unknown pool;
    409: `custom_prefix` already allocated; 422: the pool is exhausted or the prefix is bad."""
    alloc = await ctl.ipv6.allocate(body)
    request.state.created_id = str(alloc.id)
    return allocation_to_dict(alloc)


@router.delete("/api/v1/ipv6/allocations/{id}", dependencies=[requires(P.IPV6_EDIT)], status_code=204, response_class=Response,
               responses={**_NO_CONTENT, **errors(404)}, summary="Release an IPv6 allocation")
async def delete_allocation(id: IntId, ctl: Ctl) -> Response:
    """Release an allocated prefix (it can be handed out again)."""
    await ctl.ipv6.release(id)
    return Response(status_code=204)
