"""IPv6 prefix pools (seed 001): pools of prefixes and the prefixes allocated from them."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controller.db import fetch_page
from controller.errors import AlreadyExists, Conflict, NotFound
from controller.ipam import allocate_prefix, check_prefix, parse_pool, pool_totals, reserve_first
from controller.models import Ipv6Allocation, Ipv6Pool
from controller.schemas.ipv6 import AllocationBody, PoolBody

_LOCK_STRIPES = 64


class Ipv6PoolService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        # allocation is read-compute-insert; one at a time per pool (the unique index backs it up). A fixed set
        # of locks striped by pool id: a lock per id asked for would grow with every unknown id a caller sends
        self._locks = [asyncio.Lock() for _ in range(_LOCK_STRIPES)]

    async def list_pools(self, search: str | None, page: int,
                         size: int) -> tuple[list[tuple[Ipv6Pool, list[Ipv6Allocation]]], int]:
        query = select(Ipv6Pool)
        if search:
            query = query.where(Ipv6Pool.name.icontains(search, autoescape=True))
        async with self._sessions() as s:
            pools, total = await fetch_page(s, query, (Ipv6Pool.id,), page, size)
            allocs = (await s.scalars(select(Ipv6Allocation).where(Ipv6Allocation.pool_id.in_([p.id for p in pools]))
                                      .order_by(Ipv6Allocation.id))).all()
        by_pool: dict[int, list[Ipv6Allocation]] = {}
        for a in allocs:
            by_pool.setdefault(a.pool_id, []).append(a)
        return [(p, by_pool.get(p.id, [])) for p in pools], total

    async def get_pool(self, pool_id: int) -> tuple[Ipv6Pool, list[Ipv6Allocation]]:
        async with self._sessions() as s:
            pool = await s.get(Ipv6Pool, pool_id)
            if pool is None:
                raise NotFound(f"IPv6 pool {pool_id} not found")
            allocs = (await s.scalars(select(Ipv6Allocation).where(Ipv6Allocation.pool_id == pool_id)
                                      .order_by(Ipv6Allocation.id))).all()
        return pool, list(allocs)

    async def create_pool(self, cmd: PoolBody) -> Ipv6Pool:
        net = parse_pool(cmd.prefix, cmd.prefix_length)
        if isinstance(cmd.reserved_prefixes, int):  # seed 001: a count of prefixes kept back from the start
            reserved = reserve_first(str(net), cmd.prefix_length, cmd.reserved_prefixes)
        else:
            reserved = [check_prefix(str(net), r, cmd.prefix_length, (), (), field="reserved_prefixes")
                        for r in cmd.reserved_prefixes]
        async with self._sessions() as s:
            if await s.scalar(select(Ipv6Pool.id).where(Ipv6Pool.name == cmd.name)) is not None:
                raise AlreadyExists(f"an IPv6 pool named {cmd.name} exists", {"name": "already exists"})
            pool = Ipv6Pool(name=cmd.name, prefix=str(net), prefix_length=cmd.prefix_length,
                            reserved=reserved, description=cmd.description)
            s.add(pool)
            await s.commit()
        return pool

    async def delete_pool(self, pool_id: int) -> None:
        async with self._sessions() as s:
            pool = await s.get(Ipv6Pool, pool_id)
            if pool is None:
                raise NotFound(f"IPv6 pool {pool_id} not found")
            if await s.scalar(select(func.count()).where(Ipv6Allocation.pool_id == pool_id)):
                raise Conflict("the pool still has allocations; release them first")
            await s.delete(pool)
            await s.commit()

    async def list_allocations(self, pool_id: int | None, page: int, size: int) -> tuple[list[Ipv6Allocation], int]:
        query = select(Ipv6Allocation)
        if pool_id is not None:
            query = query.where(Ipv6Allocation.pool_id == pool_id)
        async with self._sessions() as s:
            return await fetch_page(s, query, (Ipv6Allocation.id,), page, size)

    async def allocate(self, cmd: AllocationBody) -> Ipv6Allocation:
        """The next free prefix of the pool (or the caller's ``custom_prefix``, checked)."""
        pool_id = cmd.pool_id
        async with self._locks[pool_id % _LOCK_STRIPES]:
            async with self._sessions() as s:
                pool = await s.get(Ipv6Pool, pool_id)
                if pool is None:
                    raise NotFound(f"IPv6 pool {pool_id} not found", {"pool_id": "unknown pool"})
                taken = (await s.scalars(select(Ipv6Allocation.prefix).where(Ipv6Allocation.pool_id == pool_id))).all()
                if cmd.custom_prefix:
                    prefix = check_prefix(pool.prefix, cmd.custom_prefix, pool.prefix_length, taken, pool.reserved)
                else:
                    prefix = allocate_prefix(pool.prefix, pool.prefix_length, taken, pool.reserved)
                alloc = Ipv6Allocation(pool_id=pool_id, prefix=prefix, assigned_to=cmd.client_name,
                                       description=cmd.description)
                s.add(alloc)
                await s.commit()
        return alloc

    async def release(self, allocation_id: int) -> None:
        async with self._sessions() as s:
            alloc = await s.get(Ipv6Allocation, allocation_id)
            if alloc is None:
                raise NotFound(f"IPv6 allocation {allocation_id} not found")
            await s.delete(alloc)
            await s.commit()


def totals(pool: Ipv6Pool, allocations: list[Ipv6Allocation]) -> dict[str, int]:
    return pool_totals(pool.prefix, pool.prefix_length, [a.prefix for a in allocations], pool.reserved)
