"""Accounts for sign-in tests, written into a controller's database before it starts (no route needed)."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from controller.db import make_engine, make_sessionmaker, prepare_database
from controller.models import Account
from controller.passwords import Passwords


@dataclass(frozen=True)
class Person:
    username: str
    password: str
    role: str = "viewer"
    email: str | None = None
    status: str = "active"


def seed_accounts(data_dir: Path, people: list[Person]) -> None:
    """Create the database (migrated) under data_dir with these accounts (Argon2 at its floor, as the test
    controllers use)."""
    async def run() -> None:
        engine = make_engine(f"sqlite+aiosqlite:///{data_dir / 'vpnfleet.db'}")
        try:
            await prepare_database(engine)
            sessions = make_sessionmaker(engine)
            hasher = Passwords(time_cost=1, memory_kib=8192)
            async with sessions() as s:
                for p in people:
                    s.add(Account(username=p.username, username_lower=p.username.lower(), email=p.email,
                                  role=p.role, status=p.status, password_hash=await hasher.hash(p.password),
                                  email_verified=p.email is not None))
                await s.commit()
        finally:
            await engine.dispose()

    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    old = os.umask(0o077)  # the controller refuses a readable database
    try:
        asyncio.run(run())
    finally:
        os.umask(old)
