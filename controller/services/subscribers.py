"""Subscribers (seed 004's clients): credentials valid on every node they may use, expiry, data limits, usage.

Statuses: "active"; "blocked" by an operator (until unblocked); "expired" and "limited", set by the schedule
(seed 004's deactivate_expired) when the subscription ends or the usage since the last reset reaches the
data limit. Only active subscribers are users of V2Ray on the nodes. Every change that alters who may
connect where bumps the affected nodes' desired revision and pushes it: the agents add or remove the user
through V2Ray's API, so nobody else is disturbed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import random
import secrets
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import case, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from controller import credentials
from controller.db import fetch_page
from controller.errors import AlreadyExists, Conflict, NotFound, ValidationFailed
from controller.hub.hub import Hub
from controller.models import Node, Operation, Subscriber, SubscriberUsage, utcnow
from controller.schemas.clients import STATUSES, SubscriberBody, SubscriberUpdate
from controller.services.owners import check_owner
from controller.services.desired_state import (PROFILE_LABELS, allowed_on, node_v2ray_inbounds, public_profile,
                                               reachable_nodes)
from controller.settings import Settings
from controller.share_links import Endpoint

log = logging.getLogger("vpnfleet.subscribers")

__all__ = ["STATUSES", "GIB", "MIB", "SubscriberService", "endpoint_credentials", "new_short_uuid",
           "scheduled_status"]

GIB = 1024**3
MIB = 1024**2
#: tries of one change while concurrent changes to the same subscriber keep committing first
CHANGE_ATTEMPTS = 8

T = TypeVar("T")


def new_short_uuid() -> str:
    """The secret of a subscription URL: 128 random bits, URL-safe (22 characters)."""
    return secrets.token_urlsafe(16)


def scheduled_status(sub: Subscriber, now: dt.datetime) -> str:
    """What the schedule makes of a subscriber that is not blocked: expired, limited or active."""
    if sub.expires_at <= now:
        return "expired"
    if sub.data_limit_bytes is not None and sub.used_upload_bytes + sub.used_download_bytes >= sub.data_limit_bytes:
        return "limited"
    return "active"


@dataclass(frozen=True)
class Selection:
    """Where a subscriber may connect (both None: every node)."""

    node_ids: list[str] | None
    regions: list[str] | None

    @classmethod
    def of(cls, sub: Subscriber) -> "Selection":
        return cls(sub.node_ids, sub.regions)


class SubscriberService:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], hub: Hub) -> None:
        self.settings = settings
        self._sessions = sessions
        self._hub = hub
        #: set by telemetry ingestion when subscribers' usage grew: check limits now, not at the next tick
        self.usage_grew = asyncio.Event()

    # -- reading --------------------------------------------------------------------------------------------
    async def list(self, *, status: str | None, expired: bool | None, search: str | None, page: int,
                   size: int, owner_id: int | None = None) -> tuple[list[Subscriber], int]:
        """A page of subscribers; with ``owner_id``, only that account's."""
        query = select(Subscriber)
        if owner_id is not None:
            query = query.where(Subscriber.owner_id == owner_id)
        if status:
            query = query.where(Subscriber.status == status)
        if expired is not None:
            now = utcnow()
            query = query.where(Subscriber.expires_at <= now if expired else Subscriber.expires_at > now)
        if search:
            query = query.where(or_(Subscriber.username.icontains(search, autoescape=True),
                                    Subscriber.note.icontains(search, autoescape=True),
                                    Subscriber.id == search))
        async with self._sessions() as s:
            return await fetch_page(s, query, (Subscriber.created_at, Subscriber.id), page, size)

    async def get(self, client_id: str, owner_id: int | None = None) -> Subscriber:
        """One subscriber; with ``owner_id``, only if that account owns it (else the same 404 as an unknown id:
        a user learns nothing of other people's subscribers)."""
        async with self._sessions() as s:
            return await self._get(s, client_id, owner_id)

    @staticmethod
    async def _get(s: AsyncSession, client_id: str, owner_id: int | None = None) -> Subscriber:
        sub = await s.get(Subscriber, client_id)
        if sub is None or (owner_id is not None and sub.owner_id != owner_id):
            raise NotFound(f"client {client_id} not found")
        return sub

    # -- changes --------------------------------------------------------------------------------------------
    async def create(self, new: SubscriberBody) -> Subscriber:
        now = utcnow()
        async with self._sessions() as s:
            if await self._username_taken(s, new.username):
                raise _taken(new.username)
            selection = Selection(await self._check_node_ids(s, new.node_ids), self._check_regions(new.regions))
            # credential_uuid is only the legacy shared id: a new subscriber never has it carried by any node.
            sub = Subscriber(username=new.username, credential_uuid=str(uuid.uuid4()),
                             credential_secret=credentials.new_secret(), shared_credential=False,
                             short_uuid=new_short_uuid(), expires_at=_expiry(new.days, new.expires_at, now),
                             data_limit_bytes=_limit_bytes(new.data_limit_gb),
                             node_ids=selection.node_ids, regions=selection.regions,
                             note=new.note, status="active", used_upload_bytes=0, used_download_bytes=0,
                             owner_id=await check_owner(s, new.owner_id))
            sub.status = scheduled_status(sub, now)  # an expires_at in the past makes an expired client
            s.add(sub)
            try:
                await s.flush()
            except IntegrityError:  # a concurrent create with the same username (in any case) won the race
                raise _taken(new.username) from None
            nodes = await self._bump_nodes(s, [selection])
            await s.commit()
            self._push(nodes)
        return sub

    async def update(self, client_id: str, edit: SubscriberUpdate) -> Subscriber:
        """PATCH: a new plan (expiry, data limit), where the client may connect, the username or note; only
        the fields the edit was given (``model_fields_set``) change."""
        given = edit.model_fields_set

        async def change(s: AsyncSession) -> tuple[Subscriber, list[str]]:
            now = utcnow()
            sub = await self._get(s, client_id)
            username = edit.username if "username" in given else sub.username
            renamed = username != sub.username
            # another subscriber's name in any case is taken; a change of case of one's own name is not
            if renamed and await self._username_taken(s, username, besides=sub.id):
                raise _taken(username)
            # Only what this PATCH sends is validated: stored node ids may name nodes deleted since (node
            # selection ignores them), and they must not make every later change of the client fail.
            node_ids = await self._check_node_ids(s, edit.node_ids) if "node_ids" in given else sub.node_ids
            regions = self._check_regions(edit.regions) if "regions" in given else sub.regions
            before = Selection.of(sub)
            sub.username, sub.node_ids, sub.regions = username, node_ids, regions
            if given & {"days", "expires_at"}:
                sub.expires_at = _expiry(edit.days, edit.expires_at, now)
            if "data_limit_gb" in given:
                sub.data_limit_bytes = _limit_bytes(edit.data_limit_gb)
            if "note" in given:
                sub.note = edit.note or ""
            if "owner_id" in given:
                sub.owner_id = await check_owner(s, edit.owner_id)
            if sub.status != "blocked":
                sub.status = scheduled_status(sub, now)
            try:
                await s.flush()
            except IntegrityError:  # a concurrent change took the username between the check and this write
                if not renamed:
                    raise
                raise _taken(username) from None
            return sub, await self._bump_nodes(s, [before, Selection.of(sub)])

        return await self._change(client_id, change)

    async def delete(self, client_id: str) -> None:
        """Irreversible (seed 004): access is removed from every node, the record and its usage are deleted.
        The operations log keeps its entries about the client."""
        async def change(s: AsyncSession) -> tuple[None, list[str]]:
            sub = await self._get(s, client_id)
            selection = Selection.of(sub)
            await s.delete(sub)
            return None, await self._bump_nodes(s, [selection])

        await self._change(client_id, change)

    async def extend(self, client_id: str, days: int) -> Subscriber:
        """Add days to the subscription: from its end, or from now if it already ended."""
        async def change(s: AsyncSession) -> tuple[Subscriber, list[str]]:
            now = utcnow()
            sub = await self._get(s, client_id)
            sub.expires_at = _add_days(max(sub.expires_at, now), days)
            if sub.status != "blocked":
                sub.status = scheduled_status(sub, now)
            return sub, await self._bump_nodes(s, [Selection.of(sub)])

        return await self._change(client_id, change)

    async def block(self, client_id: str) -> Subscriber:
        """Idempotent: blocking a blocked client changes nothing."""
        async def change(s: AsyncSession) -> tuple[Subscriber, list[str]]:
            sub = await self._get(s, client_id)
            if sub.status == "blocked":
                return sub, []
            sub.status = "blocked"
            return sub, await self._bump_nodes(s, [Selection.of(sub)])

        return await self._change(client_id, change)

    async def unblock(self, client_id: str) -> Subscriber:
        """Idempotent. An unblocked client whose time or data ran out is expired/limited, not active."""
        async def change(s: AsyncSession) -> tuple[Subscriber, list[str]]:
            sub = await self._get(s, client_id)
            if sub.status != "blocked":
                return sub, []
            sub.status = scheduled_status(sub, utcnow())
            return sub, await self._bump_nodes(s, [Selection.of(sub)])

        return await self._change(client_id, change)

    async def rotate(self, client_id: str) -> Subscriber:
        """New credentials and a new subscription URL; the old ones stop working on every node."""
        async def change(s: AsyncSession) -> tuple[Subscriber, list[str]]:
            sub = await self._get(s, client_id)
            sub.credential_uuid = str(uuid.uuid4())
            sub.credential_secret = credentials.new_secret()  # every node's id changes
            sub.shared_credential = False  # the cut-over from a legacy shared id
            sub.short_uuid = new_short_uuid()
            return sub, await self._bump_nodes(s, [Selection.of(sub)])

        return await self._change(client_id, change)

    async def cut_over_shared_credentials(self) -> int:
        """End every legacy shared id at once (subscribers made before per-node ids): from now on each node
        only accepts its own id, which the subscriptions already serve. Returns how many were cut over."""
        async with self._sessions() as s:
            result = await s.execute(update(Subscriber).where(Subscriber.shared_credential.is_(True))
                                     .values(shared_credential=False, version=Subscriber.version + 1)
                                     .execution_options(synchronize_session=False))
            count = result.rowcount or 0
            nodes = await self._bump_nodes(s, [Selection(None, None)]) if count else []
            await s.commit()
        self._push(nodes)
        return count

    async def reset_usage(self, client_id: str) -> Subscriber:
        """Start counting towards the data limit from zero (the hourly history is kept)."""
        async def change(s: AsyncSession) -> tuple[Subscriber, list[str]]:
            now = utcnow()
            sub = await self._get(s, client_id)
            sub.used_upload_bytes = sub.used_download_bytes = 0
            sub.usage_reset_at = now
            if sub.status != "limited":
                return sub, []
            sub.status = scheduled_status(sub, now)
            return sub, await self._bump_nodes(s, [Selection.of(sub)])

        return await self._change(client_id, change)

    async def _change(self, client_id: str,
                      change: Callable[[AsyncSession], Awaitable[tuple[T, list[str]]]]) -> T:
        """Run `change` (read the subscriber, modify it, bump the nodes it affects) in a transaction of its
        own, then push the bumped nodes. When another change of the subscriber (an operator's or the
        schedule's) committed after the read, the version check makes the write fail instead of
        overwriting it, and the whole change runs again on the new state."""
        for attempt in range(CHANGE_ATTEMPTS):
            try:
                async with self._sessions() as s:
                    result, nodes = await change(s)
                    await s.commit()
            except StaleDataError:
                # random backoff, so changes that lost together do not collide again in lockstep
                await asyncio.sleep(random.uniform(0, 0.005 * 2**attempt))
                continue
            self._push(nodes)
            return result
        raise Conflict(f"client {client_id} is being changed concurrently; try again")

    # -- the schedule (seed 004's deactivate_expired) --------------------------------------------------------
    async def deactivate_expired(self) -> dict[str, int]:
        """Active clients whose time ran out become expired, those at their data limit limited; their
        access is removed from the nodes and each change is written to the operations log."""
        now = utcnow()
        used = Subscriber.used_upload_bytes + Subscriber.used_download_bytes
        ended = Subscriber.expires_at <= now
        # One conditional UPDATE instead of reading the rows and writing back what was decided on them: the
        # condition is checked on each row as it is when written, so an extend, usage reset or block that an
        # operator commits meanwhile is never overwritten. Bumping the version makes an operator's change
        # that read the row before this one run again on the new state (SubscriberService._change).
        stmt = (update(Subscriber)
                .where(Subscriber.status == "active",
                       or_(ended, Subscriber.data_limit_bytes.is_not(None) & (used >= Subscriber.data_limit_bytes)))
                .values(status=case((ended, "expired"), else_="limited"), version=Subscriber.version + 1,
                        updated_at=now)
                .returning(Subscriber.id, Subscriber.status, Subscriber.expires_at, Subscriber.used_upload_bytes,
                           Subscriber.used_download_bytes, Subscriber.data_limit_bytes, Subscriber.node_ids,
                           Subscriber.regions)
                .execution_options(synchronize_session=False))
        changed: dict[str, int] = {}
        async with self._sessions() as s:
            rows = (await s.execute(stmt)).all()
            if not rows:
                return changed
            for row in rows:
                changed[row.status] = changed.get(row.status, 0) + 1
                s.add(Operation(actor="scheduler", action="deactivate_expired", target_type="client",
                                target_id=row.id, client_id=row.id,
                                payload={"status": row.status, "expires_at": row.expires_at.isoformat(),
                                         "used_bytes": row.used_upload_bytes + row.used_download_bytes,
                                         "data_limit_bytes": row.data_limit_bytes},
                                result="success", status_code=200, request_id="scheduler"))
            nodes = await self._bump_nodes(s, [Selection(row.node_ids, row.regions) for row in rows])
            await s.commit()
            self._push(nodes)
        log.info("deactivated clients: %s", ", ".join(f"{n} {st}" for st, n in sorted(changed.items())))
        return changed

    async def run_schedule(self) -> None:
        """Check every client_check_interval seconds, and at once when usage was stored."""
        while True:
            try:
                await asyncio.wait_for(self.usage_grew.wait(), self.settings.client_check_interval)
            except TimeoutError:
                pass
            self.usage_grew.clear()
            try:
                await self.deactivate_expired()
            except Exception:
                log.exception("deactivating expired clients failed; will retry")

    # -- usage ----------------------------------------------------------------------------------------------
    async def usage(self, client_id: str, days: int, owner_id: int | None = None) -> dict[str, Any]:
        """Transfer per node per day (UTC) over the last `days` days, with totals."""
        since = utcnow().replace(hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(days=days - 1)
        async with self._sessions() as s:
            sub = await self._get(s, client_id, owner_id)
            rows = (await s.execute(
                select(SubscriberUsage.node_uuid, SubscriberUsage.hour_start, SubscriberUsage.upload_bytes,
                       SubscriberUsage.download_bytes)
                .where(SubscriberUsage.client_id == client_id, SubscriberUsage.hour_start >= since))).all()
            names = dict((await s.execute(select(Node.uuid, Node.name).where(
                Node.uuid.in_({r.node_uuid for r in rows})))).all()) if rows else {}
        per_node: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
        for r in rows:
            day = per_node[r.node_uuid][r.hour_start.date().isoformat()]
            day[0] += r.upload_bytes
            day[1] += r.download_bytes
        nodes = []
        for node_uuid in sorted(per_node):
            daily = [{"date": d, "upload_bytes": up, "download_bytes": down, "total_bytes": up + down}
                     for d, (up, down) in sorted(per_node[node_uuid].items())]
            nodes.append({"node_id": node_uuid, "node_name": names.get(node_uuid), "days": daily,
                          "upload_bytes": sum(x["upload_bytes"] for x in daily),
                          "download_bytes": sum(x["download_bytes"] for x in daily)})
        return {
            "client_id": sub.id, "since": since.date().isoformat(), "nodes": nodes,
            "period": {"upload_bytes": sum(n["upload_bytes"] for n in nodes),
                       "download_bytes": sum(n["download_bytes"] for n in nodes)},
            "used": {"upload_bytes": sub.used_upload_bytes, "download_bytes": sub.used_download_bytes,
                     "total_bytes": sub.used_upload_bytes + sub.used_download_bytes,
                     "data_limit_bytes": sub.data_limit_bytes,
                     "since": sub.usage_reset_at.isoformat() if sub.usage_reset_at else None},
        }

    # -- subscriptions --------------------------------------------------------------------------------------
    async def by_short_uuid(self, short_uuid: str) -> Subscriber:
        async with self._sessions() as s:
            sub = await s.scalar(select(Subscriber).where(Subscriber.short_uuid == short_uuid))
        if sub is None:
            raise NotFound("subscription not found")
        return sub

    async def endpoints(self, sub: Subscriber) -> list[Endpoint]:
        """Every inbound of every running node the subscriber may use (what their app connects to), each with
        its transport profile and the node's public values (REALITY public key, short id and server name;
        the TLS domain and ws path): the same on every fetch."""
        if not self.settings.v2ray_enabled:
            return []
        async with self._sessions() as s:
            nodes = await reachable_nodes(s)
        out = []
        for node in nodes:
            if not allowed_on(sub.node_ids, sub.regions, node.uuid, node.region):
                continue
            for inbound in node_v2ray_inbounds(node, self.settings.v2ray_port, self.settings.v2ray_vless_port,
                                               self.settings):
                out.append(Endpoint(name=f"{node.name} {PROFILE_LABELS[inbound['profile']]}",
                                    port=int(inbound["port"]), protocol=inbound["protocol"], node_id=node.uuid,
                                    **public_profile(node, inbound, self.settings)))
        return out

    def subscription_url(self, sub: Subscriber) -> str:
        return f"{self.settings.http_url}/sub/{sub.short_uuid}"

    # -- internals ------------------------------------------------------------------------------------------
    @staticmethod
    async def _username_taken(s: AsyncSession, username: str, besides: str | None = None) -> bool:
        """Whether another subscriber has this username in any case (Alice and alice are one name: the
        unique index on lower(username), migration 0008, holds it against races too)."""
        query = select(Subscriber.id).where(func.lower(Subscriber.username) == username.lower())
        if besides is not None:
            query = query.where(Subscriber.id != besides)
        return await s.scalar(query.limit(1)) is not None

    @staticmethod
    async def _check_node_ids(s: AsyncSession, node_ids: list[str] | None) -> list[str] | None:
        """Node ids given by the operator: each must be a node that is not deleted. Empty: None (every node)."""
        if not node_ids:
            return None
        known = set((await s.scalars(select(Node.uuid).where(Node.uuid.in_(node_ids),
                                                             Node.is_deleted.is_(False)))).all())
        unknown = [n for n in node_ids if n not in known]
        if unknown:
            raise ValidationFailed(f"unknown node {unknown[0]}", {"node_ids": f"unknown node {unknown[0]}"})
        return sorted(set(node_ids))

    def _check_regions(self, regions: list[str] | None) -> list[str] | None:
        """Regions given by the operator: each must be configured. Empty: None (every region)."""
        if not regions:
            return None
        configured = {r.code for r in self.settings.all_regions()}
        unknown = [r for r in regions if r not in configured]
        if unknown:
            raise ValidationFailed(f"unknown region '{unknown[0]}' (configured: {', '.join(sorted(configured))})",
                                   {"regions": f"unknown region {unknown[0]}"})
        return sorted(set(regions))

    async def _bump_nodes(self, s: AsyncSession, selections: list[Selection]) -> list[str]:
        """Bump the desired revision of every node any of the selections covers; returns them. The caller
        pushes (self._push) after its commit, so the pusher never reads the state from before the change."""
        if not self.settings.v2ray_enabled:
            return []
        nodes = (await s.execute(select(Node.uuid, Node.region).where(Node.is_deleted.is_(False)))).all()
        affected = [n.uuid for n in nodes
                    if any(allowed_on(sel.node_ids, sel.regions, n.uuid, n.region) for sel in selections)]
        for i in range(0, len(affected), 500):
            await s.execute(update(Node).where(Node.uuid.in_(affected[i:i + 500]))
                            .values(desired_revision=Node.desired_revision + 1))
        return affected

    def _push(self, nodes: list[str]) -> None:
        if nodes:
            self._hub.mark_dirty(nodes)


def endpoint_credentials(sub: Subscriber) -> Callable[[Endpoint], str]:
    """The subscriber's id on each endpoint's node (per-node ids: see controller.credentials)."""
    return lambda endpoint: credentials.node_credential(sub.credential_secret, endpoint.node_id)


def _taken(username: str) -> AlreadyExists:
    return AlreadyExists(f"a client named '{username}' already exists", {"username": "already taken"})


def _add_days(start: dt.datetime, days: int) -> dt.datetime:
    """start + days, as a validation error on `days` when that is past what a datetime holds (year 9999)."""
    try:
        return start + dt.timedelta(days=days)
    except OverflowError:
        raise ValidationFailed("the subscription would end after the year 9999",
                               {"days": "ends after the year 9999"}) from None


def _expiry(days: int | None, expires_at: dt.datetime | None, now: dt.datetime) -> dt.datetime:
    """expires_at from `days` (from now) or an explicit `expires_at`; exactly one must be given."""
    if days is not None and expires_at is not None:
        raise ValidationFailed("give either days or expires_at, not both", {"days": "conflicts with expires_at"})
    if days is not None:
        return _add_days(now, days)
    if expires_at is not None:
        try:  # in UTC now: stored so anyway, and a time beyond year 1..9999 in UTC must be a 422, not a 500
            return expires_at.astimezone(dt.timezone.utc)
        except OverflowError:
            raise ValidationFailed("expires_at is out of range",
                                   {"expires_at": "not within the years 1-9999 in UTC"}) from None
    raise ValidationFailed("days or expires_at is required", {"days": "required unless expires_at is given"})


def _limit_bytes(gb: float | None) -> int | None:
    """GB (GiB, as V2Ray panels count) to bytes; None or 0 means no limit. A limit below 1 MiB is refused:
    it would round to (almost) nothing, and 0 bytes would read as "no limit" while the client is limited."""
    if not gb:
        return None
    if not math.isfinite(gb):
        raise ValidationFailed("data_limit_gb must be a finite number", {"data_limit_gb": "not a finite number"})
    if gb * GIB < MIB:
        raise ValidationFailed(f"data_limit_gb must be at least {MIB / GIB} (1 MiB), or 0 or null for no limit",
                               {"data_limit_gb": "below 1 MiB (0.0009765625 GB)"})
    return int(gb * GIB)
