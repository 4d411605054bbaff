"""Fixtures shared by the unit tests that run against both database backends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.db import make_engine
from tests.postgres_server import NO_POSTGRES, PostgresServer


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server for the module (skipped where NO_POSTGRES)."""
    pg = PostgresServer().start()
    try:
        yield pg
    finally:
        pg.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    NO_POSTGRES, reason="PostgreSQL server binaries not installed (make test installs Debian's postgresql)"))])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """An empty database (no migration run yet), once on SQLite and once on PostgreSQL. A module that needs it
    at some migration overrides ``engine`` with a fixture that takes this one and upgrades it."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}" if request.param == "sqlite" else \
        request.getfixturevalue("postgres").url
    eng = make_engine(url)
    try:
        yield eng
    finally:
        if request.param == "postgresql":  # one server for the module: leave it empty for the next test
            async with eng.begin() as conn:
                await conn.execute(text("DROP SCHEMA public CASCADE"))
                await conn.execute(text("CREATE SCHEMA public"))
        await eng.dispose()
