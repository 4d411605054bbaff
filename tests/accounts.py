"""Accounts for tests: rows written into a stopped (or not yet started) controller's database, so a test can
hold accounts of every role, with passwords or keys, without going through the API it is testing."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from controller.auth import SHOWN_PREFIX_LENGTH, hash_key, new_key
from controller.db import make_engine, make_sessionmaker, prepare_database
from controller.models import Account, ApiKey
from controller.passwords import Passwords


@dataclass(frozen=True)
class Person:
    username: str
    password: str | None = None
    role: str = "viewer"
    email: str | None = None
    status: str = "active"
    #: also give the account one full API key (named "<username>-key")
    with_key: bool = False


@dataclass(frozen=True)
class Seeded:
    account_id: int
    key: str | None


async def _seed(db_url: str, people: list[Person]) -> dict[str, Seeded]:
    engine = make_engine(db_url)
    hasher = Passwords(time_cost=1, memory_kib=8192)  # Argon2 at its floor, as the test controllers use
    try:
        await prepare_database(engine)
        made: dict[str, Seeded] = {}
        async with make_sessionmaker(engine)() as s:
            for p in people:
                account = Account(username=p.username, username_lower=p.username.lower(), email=p.email,
                                  full_name=p.username.title(), role=p.role, status=p.status,
                                  password_hash=await hasher.hash(p.password) if p.password else None,
                                  email_verified=p.email is not None)
                s.add(account)
                await s.flush()
                key = new_key() if p.with_key else None
                if key:
                    s.add(ApiKey(name=f"{p.username}-key", key_hash=hash_key(key), account_id=account.id,
                                 prefix=key[:SHOWN_PREFIX_LENGTH]))
                made[p.username] = Seeded(account.id, key)
            await s.commit()
        return made
    finally:
        await engine.dispose()


def seed_accounts(data_dir: Path, people: list[Person]) -> dict[str, Seeded]:
    """Write these accounts into DATA_DIR's database (migrated first): username -> (account id, key or None).
    The controller must not be running (it loads accounts and keys at start)."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    old = os.umask(0o077)  # the controller refuses a database others can read
    try:
        return asyncio.run(_seed(f"sqlite+aiosqlite:///{data_dir / 'vpnfleet.db'}", people))
    finally:
        os.umask(old)
