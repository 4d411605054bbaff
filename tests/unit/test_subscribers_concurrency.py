"""Concurrent changes of subscribers never overwrite each other, on SQLite and PostgreSQL.

Real sessions of a real database. A race is made deterministic with a session that runs something just before
its first write, i.e. after it read what it decides on: the window in which another change can commit.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Select, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from controller.db import make_engine, make_sessionmaker, prepare_database
from controller.errors import AlreadyExists
from controller.migrations import alembic_config
from controller.models import Node, Subscriber, utcnow
from controller.schemas.clients import SubscriberBody, SubscriberUpdate
from controller.services.subscribers import GIB, SubscriberService
from controller.settings import Settings



class FakeHub:
    """Records the nodes each committed change pushes."""

    def __init__(self) -> None:
        self.pushed: list[list[str]] = []

    def mark_dirty(self, nodes: list[str]) -> None:
        self.pushed.append(sorted(nodes))


def pausing_sessions(engine: AsyncEngine, pause: Callable[[], Awaitable[Any]]) -> async_sessionmaker[AsyncSession]:
    """Sessions that run `pause` once (for the first of them that gets there) just before a write: a flush, a
    commit, or any statement but a read of the subscribers (autoflush writes before those)."""
    pending: list[Callable[[], Awaitable[Any]]] = [pause]

    class Pausing(AsyncSession):
        async def _pause(self) -> None:
            if pending:
                await pending.pop()()

        async def execute(self, statement: Any, *args: Any, **kw: Any) -> Any:
            if not (isinstance(statement, Select) and Subscriber.__table__ in statement.get_final_froms()):
                await self._pause()
            return await super().execute(statement, *args, **kw)

        async def flush(self, objects: Any = None) -> None:
            await self._pause()
            await super().flush(objects)

        async def commit(self) -> None:
            await self._pause()
            await super().commit()

    return async_sessionmaker(engine, class_=Pausing, expire_on_commit=False)


@dataclass
class Env:
    engine: AsyncEngine
    settings: Settings
    hub: FakeHub
    svc: SubscriberService
    node: str

    def service(self, sessions: async_sessionmaker[AsyncSession]) -> SubscriberService:
        """Another service (same database, same hub) on its own sessions."""
        return SubscriberService(self.settings, sessions, self.hub)  # type: ignore[arg-type]

    async def revision(self) -> int:
        async with self.svc._sessions() as s:
            return int(await s.scalar(select(Node.desired_revision).where(Node.uuid == self.node)) or 0)

    async def set(self, client_id: str, **values: Any) -> None:
        """Change the row behind the service's back (time passing, usage arriving)."""
        async with self.svc._sessions() as s:
            await s.execute(update(Subscriber).where(Subscriber.id == client_id).values(**values))
            await s.commit()


@pytest.fixture
async def env(engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[Env]:
    """A subscriber service over each backend's empty database (tests/unit/conftest.py), with one node."""
    await prepare_database(engine)
    settings = Settings(data_dir=tmp_path)
    hub = FakeHub()
    svc = SubscriberService(settings, make_sessionmaker(engine), hub)  # type: ignore[arg-type]
    async with svc._sessions() as s:
        node = Node(name="n1", region="local", provider="local", status="running", public_ip="203.0.113.5")
        s.add(node)
        await s.commit()
    yield Env(engine, settings, hub, svc, node.uuid)


async def test_concurrent_extends_all_count_and_each_pushes_once(env: Env) -> None:
    sub = await env.svc.create(SubscriberBody(username="alice", days=30))
    revision, pushes = await env.revision(), len(env.hub.pushed)
    n = 6
    await asyncio.gather(*(env.svc.extend(sub.id, 10) for _ in range(n)))
    assert (await env.svc.get(sub.id)).expires_at - sub.expires_at == dt.timedelta(days=10 * n)
    # one bump and one push per committed extend; the attempts that lost a race were rolled back, unpushed
    assert await env.revision() == revision + n
    assert env.hub.pushed[pushes:] == [[env.node]] * n


async def test_the_schedule_keeps_an_extend_committed_after_it_started(env: Env) -> None:
    sub = await env.svc.create(SubscriberBody(username="alice", days=1))
    await env.set(sub.id, expires_at=utcnow() - dt.timedelta(seconds=1))
    extended: list[Subscriber] = []

    async def extend() -> None:
        extended.append(await env.svc.extend(sub.id, 30))

    revision, pushes = await env.revision(), len(env.hub.pushed)
    assert await env.service(pausing_sessions(env.engine, extend)).deactivate_expired() == {}
    after = await env.svc.get(sub.id)
    assert extended and after.status == "active" and after.expires_at == extended[0].expires_at > utcnow()
    assert await env.svc.deactivate_expired() == {}
    assert await env.revision() == revision + 1 and env.hub.pushed[pushes:] == [[env.node]]  # the extend's


async def test_the_schedule_keeps_a_usage_reset_committed_after_it_started(env: Env) -> None:
    sub = await env.svc.create(SubscriberBody(username="alice", days=30, data_limit_gb=1))
    await env.set(sub.id, used_download_bytes=GIB)

    async def reset() -> None:
        await env.svc.reset_usage(sub.id)

    assert await env.service(pausing_sessions(env.engine, reset)).deactivate_expired() == {}
    after = await env.svc.get(sub.id)
    assert after.status == "active" and after.used_download_bytes == 0


async def test_the_schedule_keeps_a_block_committed_after_it_started(env: Env) -> None:
    sub = await env.svc.create(SubscriberBody(username="alice", days=1))
    await env.set(sub.id, expires_at=utcnow() - dt.timedelta(seconds=1))

    async def block() -> None:
        await env.svc.block(sub.id)

    assert await env.service(pausing_sessions(env.engine, block)).deactivate_expired() == {}
    assert (await env.svc.get(sub.id)).status == "blocked"
    assert (await env.svc.unblock(sub.id)).status == "expired"


async def test_an_extend_that_read_before_the_schedule_ran_is_redone(env: Env) -> None:
    """The schedule commits between an extend's read and its write: the extend runs again on the new state,
    so the client is active, not expired with a future expiry that no schedule run would ever fix."""
    sub = await env.svc.create(SubscriberBody(username="alice", days=1))
    await env.set(sub.id, expires_at=utcnow() - dt.timedelta(seconds=1))
    done: list[dict[str, int]] = []

    async def schedule() -> None:
        done.append(await env.svc.deactivate_expired())

    revision, pushes = await env.revision(), len(env.hub.pushed)
    extended = await env.service(pausing_sessions(env.engine, schedule)).extend(sub.id, 30)
    assert done == [{"expired": 1}]
    after = await env.svc.get(sub.id)
    assert after.status == extended.status == "active" and after.expires_at > utcnow() + dt.timedelta(days=29)
    # each committed change bumped and pushed once: the schedule's, then the extend's
    assert await env.revision() == revision + 2 and env.hub.pushed[pushes:] == [[env.node]] * 2


async def test_concurrent_renames_to_one_username_make_one_409(env: Env) -> None:
    a = await env.svc.create(SubscriberBody(username="alice", days=30))
    b = await env.svc.create(SubscriberBody(username="bob", days=30))
    both_checked = asyncio.Barrier(2)  # both have checked the name is free before either writes

    async def rename(client_id: str) -> Subscriber:
        return await env.service(pausing_sessions(env.engine, both_checked.wait)).update(
            client_id, SubscriberUpdate(username="carol"))

    results = await asyncio.gather(rename(a.id), rename(b.id), return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["AlreadyExists", "Subscriber"], results
    error = next(r for r in results if isinstance(r, AlreadyExists))
    assert error.details == {"username": "already taken"}
    names = {(await env.svc.get(a.id)).username, (await env.svc.get(b.id)).username}
    assert "carol" in names and names & {"alice", "bob"}


async def test_existing_subscribers_get_a_version(tmp_path: Path) -> None:
    """Migration 0004 adds the version column with a default for the rows already there."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0003"))
        await conn.execute(text(
            "INSERT INTO clients (id, username, credential_uuid, short_uuid, status, expires_at, used_upload_bytes,"
            " used_download_bytes, note, created_at, updated_at) VALUES ('c1', 'old', 'u', 's', 'active',"
            " '2099-01-01 00:00:00', 0, 0, '', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"))
    await prepare_database(engine)
    svc = SubscriberService(Settings(data_dir=tmp_path), make_sessionmaker(engine), FakeHub())  # type: ignore[arg-type]
    assert (await svc.get("c1")).version == 1
    assert (await svc.extend("c1", 1)).version == 2
    await engine.dispose()


async def test_existing_subscribers_keep_their_shared_id_and_get_a_secret_each(tmp_path: Path) -> None:
    """Migration 0006: subscribers from before per-node ids get their own secret and keep the shared id valid
    (shared_credential) until their next rotation; new subscribers never have one."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0005"))
        for cid in ("c1", "c2"):
            await conn.execute(text(
                "INSERT INTO clients (id, username, credential_uuid, short_uuid, status, expires_at,"
                " used_upload_bytes, used_download_bytes, note, created_at, updated_at, version) VALUES"
                f" ('{cid}', '{cid}', 'u-{cid}', 's-{cid}', 'active', '2099-01-01 00:00:00', 0, 0, '',"
                " '2026-01-01 00:00:00', '2026-01-01 00:00:00', 1)"))
    await prepare_database(engine)
    svc = SubscriberService(Settings(data_dir=tmp_path), make_sessionmaker(engine), FakeHub())  # type: ignore[arg-type]
    c1, c2 = await svc.get("c1"), await svc.get("c2")
    assert c1.shared_credential and c2.shared_credential and c1.credential_uuid == "u-c1"
    assert len(c1.credential_secret) >= 40 and c1.credential_secret != c2.credential_secret
    rotated = await svc.rotate("c1")
    assert not rotated.shared_credential and rotated.credential_secret != c1.credential_secret
    new = await svc.create(SubscriberBody(username="new", days=1))
    assert not new.shared_credential
    await engine.dispose()
