"""Accounts for tests: rows written into a stopped controller's database, so a test can hold a key of every
role without going through the API it is testing."""

from __future__ import annotations

import asyncio
from pathlib import Path

from controller.auth import SHOWN_PREFIX_LENGTH, hash_key, new_key
from controller.db import make_engine, make_sessionmaker, prepare_database
from controller.models import Account, ApiKey


async def _seed(db_url: str, roles: list[str]) -> dict[str, tuple[int, str]]:
    engine = make_engine(db_url)
    try:
        await prepare_database(engine)
        made: dict[str, tuple[int, str]] = {}
        async with make_sessionmaker(engine)() as s:
            for role in roles:
                name = f"{role}-account"
                account = Account(username=name, username_lower=name, full_name=role.title(), role=role,
                                  status="active")
                s.add(account)
                await s.flush()
                key = new_key()
                s.add(ApiKey(name=f"{role}-key", key_hash=hash_key(key), account_id=account.id,
                             prefix=key[:SHOWN_PREFIX_LENGTH]))
                made[role] = (account.id, key)
            await s.commit()
        return made
    finally:
        await engine.dispose()


def seed_accounts(data_dir: Path, roles: list[str]) -> dict[str, tuple[int, str]]:
    """One active account ``<role>-account`` per role with one full key each: role -> (account id, key).
    The controller must be stopped (it loads accounts and keys at start)."""
    return asyncio.run(_seed(f"sqlite+aiosqlite:///{data_dir / 'vpnfleet.db'}", roles))
