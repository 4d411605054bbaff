"""Database engine and sessions (SQLAlchemy 2 async). SQLite by default, PostgreSQL for larger fleets."""

from __future__ import annotations

from pathlib import Path

from typing import Any

from sqlalchemy import Select, event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from controller.migrations import upgrade_to_head


def make_engine(url: str) -> AsyncEngine:
    """Create the engine; SQLite gets WAL, foreign keys and a busy timeout on every connection."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001 - DB-API connection
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


async def prepare_database(engine: AsyncEngine) -> None:
    """Bring the schema to the newest migration."""
    async with engine.begin() as conn:
        await conn.run_sync(upgrade_to_head)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def fetch_page(s: AsyncSession, query: Select[Any], order_by: tuple[Any, ...], page: int,
                     size: int) -> tuple[list[Any], int]:
    """One page of ``query`` in ``order_by`` order, and the total count of rows the query matches."""
    total = await s.scalar(select(func.count()).select_from(query.subquery()))
    rows = (await s.scalars(query.order_by(*order_by).offset((page - 1) * size).limit(size))).all()
    return list(rows), int(total or 0)
