"""Migration 0011: a database from before accounts keeps working. Its admin key becomes the key of an 'admin'
account (no password yet), and that key still authenticates, with full power, through the Directory the
controller builds over the upgraded database (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.auth import Directory, bootstrap_admin, hash_key, new_key
from controller.db import make_sessionmaker, prepare_database
from controller.migrations import alembic_config
from controller.permissions import ALL, Role
from controller.tokens import TokenSigner



@pytest.fixture
async def engine(engine: AsyncEngine) -> AsyncEngine:
    """The empty database of tests/unit/conftest.py, at migration 0010 (the schema before accounts)."""
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0010"))
    return engine


async def _insert_key(engine: AsyncEngine, name: str, key: str, is_admin: bool) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.text("INSERT INTO api_keys (name, key_hash, is_admin, created_at) "
                                   "VALUES (:n, :h, :a, :t)"),
                           {"n": name, "h": hash_key(key), "a": is_admin, "t": dt.datetime.now(dt.timezone.utc)})


def _directory(engine: AsyncEngine, tmp_path: Path) -> Directory:
    signer = TokenSigner(tmp_path / "jwt", 900, dt.timedelta(days=30))
    signer.load()
    return Directory(make_sessionmaker(engine), signer)


async def test_the_old_admin_key_becomes_the_admin_accounts_and_still_authenticates(
        engine: AsyncEngine, tmp_path: Path) -> None:
    admin_key, other_key = new_key(), new_key()
    await _insert_key(engine, "admin", admin_key, True)
    await _insert_key(engine, "ci", other_key, False)
    await prepare_database(engine)  # 0010 -> head, as the controller's start does

    async with engine.connect() as conn:
        accounts = (await conn.execute(sa.text("SELECT id, username, username_lower, role, status, password_hash, "
                                               "permissions FROM accounts"))).all()
        keys = (await conn.execute(sa.text("SELECT name, account_id, access_level, permissions, allowed_ips, "
                                           "revoked_at FROM api_keys ORDER BY id"))).all()
    assert len(accounts) == 1
    admin_id, username, lower, role, status, password_hash, permissions = accounts[0]
    assert (username, lower, role, status, password_hash, permissions) == ("admin", "admin", "admin", "active",
                                                                           None, None)
    # every key from before acted with full power, and still does, as the admin account's
    assert [tuple(k) for k in keys] == [("admin", admin_id, "full", None, None, None),
                                        ("ci", admin_id, "full", None, None, None)]

    directory = _directory(engine, tmp_path)
    await directory.load()
    for key in (admin_key, other_key):
        entry = directory.authenticate_key(key)
        assert entry is not None and entry.account_id == admin_id
        principal = directory.key_principal(entry, "127.0.0.1", "/api/v1/nodes")
        assert principal.role is Role.ADMIN and principal.permissions == ALL and principal.username == "admin"
    assert directory.authenticate_key(new_key()) is None

    # the first start after the upgrade makes no second admin nor a new key: it says the password is unset
    async def never(password: str) -> str:
        raise AssertionError("no password is made for an upgraded admin")
    first = await bootstrap_admin(make_sessionmaker(engine), tmp_path / "data", never)
    assert first.password_unset and first.admin_key is None and first.admin_password is None
    async with engine.connect() as conn:
        assert (await conn.execute(sa.text("SELECT count(*) FROM accounts"))).scalar_one() == 1
        assert (await conn.execute(sa.text("SELECT count(*) FROM api_keys"))).scalar_one() == 2


async def test_a_database_without_keys_gets_no_account(engine: AsyncEngine, tmp_path: Path) -> None:
    """Nothing to carry over: the first start makes the admin account, its password and its key."""
    await prepare_database(engine)
    async with engine.connect() as conn:
        assert (await conn.execute(sa.text("SELECT count(*) FROM accounts"))).scalar_one() == 0

    async def hashed(password: str) -> str:
        return "$argon2id$test"
    first = await bootstrap_admin(make_sessionmaker(engine), tmp_path / "data", hashed)
    assert first.admin_key and first.admin_password and not first.password_unset
    directory = _directory(engine, tmp_path)
    await directory.load()
    entry = directory.authenticate_key(first.admin_key)
    assert entry is not None
    assert directory.key_principal(entry, "::1", "/api/v1/users").permissions == ALL
