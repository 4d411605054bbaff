"""The migrations build exactly the schema the models describe (so a model change without a migration fails)."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from controller.db import make_engine, prepare_database
from controller.models import Base


async def test_migrations_match_models(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    await prepare_database(engine)
    await prepare_database(engine)  # idempotent

    def diff(conn):  # noqa: ANN001
        return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata)

    async with engine.connect() as conn:
        assert await conn.run_sync(diff) == []
    await engine.dispose()
