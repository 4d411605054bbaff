"""The migrations build exactly the schema the models describe (so a model change without a migration fails),
and the data migrations do what they say on rows that exist (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import warnings

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.db import prepare_database
from controller.migrations import alembic_config
from controller.models import Base



async def test_migrations_match_models(engine: AsyncEngine) -> None:
    await prepare_database(engine)
    await prepare_database(engine)  # idempotent

    def diff(conn):  # noqa: ANN001
        with warnings.catch_warnings():
            # SQLite cannot reflect expression indexes (lower(username)): the test below checks that one
            warnings.filterwarnings("ignore", message=".*expression-based index")
            return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}),
                                    Base.metadata)

    async with engine.connect() as conn:
        differences = await conn.run_sync(diff)
        if engine.dialect.name == "sqlite":
            differences = await _without_inline_ondelete(conn, differences)
        assert differences == []


async def _without_inline_ondelete(conn, differences: list) -> list:  # noqa: ANN001
    """SQLAlchemy does not reflect ON DELETE of a REFERENCES written inline in a column (how SQLite adds a
    referring column, migration 0011), so such a key reads as removed and added again. Those pairs are dropped
    here once SQLite's own PRAGMA foreign_key_list shows the model's ON DELETE."""
    def key(fk) -> tuple:  # noqa: ANN001
        return fk.table.name, tuple(c.name for c in fk.columns)

    removed = {key(d[1]): d for d in differences if d[0] == "remove_fk"}
    kept = []
    for d in differences:
        if d[0] == "add_fk" and key(d[1]) in removed:
            table, columns = key(d[1])
            rows = (await conn.execute(text(f"PRAGMA foreign_key_list({table})"))).all()
            actual = {(r[3],): r[6] for r in rows}  # (from column,) -> on_delete
            assert actual.get(columns) == (d[1].ondelete or "NO ACTION"), (table, columns, actual)
            removed.pop((table, columns))
            continue
        kept.append(d)
    return [d for d in kept if d[0] != "remove_fk" or key(d[1]) in removed]


async def _insert_clients(engine: AsyncEngine, rows: list[tuple[str, str, int]]) -> None:
    """Subscribers as migration 0007 left them: (id, username, created N days into 2026)."""
    async with engine.begin() as conn:
        for client_id, username, day in rows:
            created = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(days=day)
            if engine.dialect.name == "sqlite":  # stored without a zone there (controller.models.UTCDateTime)
                created = created.replace(tzinfo=None)
            expires = created + dt.timedelta(days=365)
            await conn.execute(text(
                "INSERT INTO clients (id, username, credential_uuid, credential_secret, shared_credential,"
                " short_uuid, status, expires_at, used_upload_bytes, used_download_bytes, note, created_at,"
                " updated_at, version) VALUES (:id, :username, 'u', 'secret', false, :short, 'active',"
                " :expires, 0, 0, '', :created, :created, 1)"),
                {"id": client_id, "username": username, "short": "s-" + client_id, "created": created,
                 "expires": expires})


async def test_0008_renames_usernames_that_clash_regardless_of_case_and_reports_them(
        engine: AsyncEngine, caplog: pytest.LogCaptureFixture) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0007"))
    long = "x" * 64
    await _insert_clients(engine, [
        ("c-alice", "alice", 1),   # the oldest "alice": keeps the name
        ("c-Alice", "Alice", 2),
        ("c-ALICE", "ALICE", 3),
        ("c-alice2", "alice-2", 4),  # already taken: the renames skip it
        ("c-long", long, 1),
        ("c-LONG", long.upper(), 2),  # renamed within 64 characters
        ("c-bob", "bob", 1),         # no clash: untouched
    ])
    with caplog.at_level(logging.WARNING, logger="vpnfleet.migrations"):
        await prepare_database(engine)

    async with engine.connect() as conn:
        names = dict((await conn.execute(text("SELECT id, username FROM clients"))).all())
        ops = (await conn.execute(text(
            "SELECT client_id, actor, action, payload FROM operations ORDER BY client_id"))).all()
        versions = dict((await conn.execute(text("SELECT id, version FROM clients"))).all())
    assert names == {"c-alice": "alice", "c-Alice": "Alice-3", "c-ALICE": "ALICE-4", "c-alice2": "alice-2",
                     "c-long": long, "c-LONG": "X" * 62 + "-2", "c-bob": "bob"}
    assert versions["c-Alice"] == 2 and versions["c-bob"] == 1  # a renamed row is a changed row

    # the report: one line per rename naming the id, both names and the subscriber that kept the name
    report = [r.getMessage() for r in caplog.records if r.name == "vpnfleet.migrations"]
    assert "3 subscriber(s) renamed" in report[0]
    for client_id, old, kept_by in (("c-Alice", "Alice", "c-alice"), ("c-ALICE", "ALICE", "c-alice"),
                                    ("c-LONG", long.upper(), "c-long")):
        line = next(m for m in report if client_id + " " in m)
        assert repr(old) in line and repr(names[client_id]) in line and kept_by in line
    # ... and the operations log, found by the renamed subscriber's id
    assert [(o.client_id, o.actor, o.action) for o in ops] == [
        ("c-ALICE", "migration", "rename_username"), ("c-Alice", "migration", "rename_username"),
        ("c-LONG", "migration", "rename_username")]
    payload = ops[1].payload if isinstance(ops[1].payload, dict) else json.loads(ops[1].payload)
    assert payload["from"] == "Alice" and payload["to"] == "Alice-3" and payload["clashed_with"] == "c-alice"

    # from now on the database itself refuses a name that differs only by case
    with pytest.raises(IntegrityError):
        await _insert_clients(engine, [("c-BOB", "BOB", 32)])


async def test_0008_without_clashes_reports_nothing_and_downgrades(
        engine: AsyncEngine, caplog: pytest.LogCaptureFixture) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0007"))
    await _insert_clients(engine, [("c1", "carol", 1), ("c2", "dave", 1)])
    with caplog.at_level(logging.WARNING, logger="vpnfleet.migrations"):
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0008"))
    assert not [r for r in caplog.records if r.name == "vpnfleet.migrations"]
    async with engine.begin() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM operations"))).scalar() == 0
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0007"))
    await _insert_clients(engine, [("c3", "CAROL", 2)])  # the index is gone
