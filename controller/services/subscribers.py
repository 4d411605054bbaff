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
import secrets
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controller.db import fetch_page
from controller.errors import AlreadyExists, NotFound, ValidationFailed
from controller.hub.hub import Hub
from controller.models import Node, Operation, Subscriber, SubscriberUsage, utcnow
from controller.services.desired_state import allowed_on, node_v2ray_inbounds, reachable_nodes
from controller.settings import Settings
from controller.share_links import Endpoint

log = logging.getLogger("vpnfleet.subscribers")

STATUSES = ("active", "blocked", "expired", "limited")
GIB = 1024**3
MAX_DAYS = 36500


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
                   size: int) -> tuple[list[Subscriber], int]:
        query = select(Subscriber)
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

    async def get(self, client_id: str) -> Subscriber:
        async with self._sessions() as s:
            return await self._get(s, client_id)

    @staticmethod
    async def _get(s: AsyncSession, client_id: str) -> Subscriber:
        sub = await s.get(Subscriber, client_id)
        if sub is None:
            raise NotFound(f"client {client_id} not found")
        return sub

    # -- changes --------------------------------------------------------------------------------------------
    async def create(self, values: dict[str, Any]) -> Subscriber:
        now = utcnow()
        async with self._sessions() as s:
            if await s.scalar(select(Subscriber.id).where(Subscriber.username == values["username"])):
                raise AlreadyExists(f"a client named '{values['username']}' already exists",
                                    {"username": "already taken"})
            selection = await self._check_selection(s, values.get("node_ids"), values.get("regions"))
            sub = Subscriber(username=values["username"], credential_uuid=str(uuid.uuid4()),
                             short_uuid=new_short_uuid(), expires_at=_expiry(values, now),
                             data_limit_bytes=_limit_bytes(values.get("data_limit_gb")),
                             node_ids=selection.node_ids, regions=selection.regions,
                             note=values.get("note") or "", status="active", used_upload_bytes=0,
                             used_download_bytes=0)
            sub.status = scheduled_status(sub, now)  # an expires_at in the past makes an expired client
            s.add(sub)
            try:
                await s.flush()
            except IntegrityError:  # a concurrent create with the same username won the race
                raise AlreadyExists(f"a client named '{values['username']}' already exists",
                                    {"username": "already taken"}) from None
            nodes = await self._bump_nodes(s, [selection])
            await s.commit()
            self._push(nodes)
        return sub

    async def update(self, client_id: str, values: dict[str, Any]) -> Subscriber:
        """PATCH: a new plan (expiry, data limit), where the client may connect, the username or note."""
        now = utcnow()
        async with self._sessions() as s:
            sub = await self._get(s, client_id)
            before = Selection.of(sub)
            if "username" in values and values["username"] != sub.username:
                if await s.scalar(select(Subscriber.id).where(Subscriber.username == values["username"])):
                    raise AlreadyExists(f"a client named '{values['username']}' already exists",
                                        {"username": "already taken"})
                sub.username = values["username"]
            if "days" in values or "expires_at" in values:
                sub.expires_at = _expiry(values, now)
            if "data_limit_gb" in values:
                sub.data_limit_bytes = _limit_bytes(values["data_limit_gb"])
            if "node_ids" in values or "regions" in values:
                selection = await self._check_selection(s, values.get("node_ids", sub.node_ids),
                                                        values.get("regions", sub.regions))
                sub.node_ids, sub.regions = selection.node_ids, selection.regions
            if "note" in values:
                sub.note = values["note"] or ""
            if sub.status != "blocked":
                sub.status = scheduled_status(sub, now)
            nodes = await self._bump_nodes(s, [before, Selection.of(sub)])
            await s.commit()
            self._push(nodes)
        return sub

    async def delete(self, client_id: str) -> None:
        """Irreversible (seed 004): access is removed from every node, the record and its usage are deleted.
        The operations log keeps its entries about the client."""
        async with self._sessions() as s:
            sub = await self._get(s, client_id)
            selection = Selection.of(sub)
            await s.delete(sub)
            nodes = await self._bump_nodes(s, [selection])
            await s.commit()
            self._push(nodes)

    async def extend(self, client_id: str, days: int) -> Subscriber:
        """Add days to the subscription: from its end, or from now if it already ended."""
        now = utcnow()
        async with self._sessions() as s:
            sub = await self._get(s, client_id)
            sub.expires_at = max(sub.expires_at, now) + dt.timedelta(days=days)
            if sub.status != "blocked":
                sub.status = scheduled_status(sub, now)
            nodes = await self._bump_nodes(s, [Selection.of(sub)])
            await s.commit()
            self._push(nodes)
        return sub

    async def block(self, client_id: str) -> Subscriber:
        """Idempotent: blocking a blocked client changes nothing."""
        async with self._sessions() as s:
            sub = await self._get(s, client_id)
            if sub.status != "blocked":
                sub.status = "blocked"
                nodes = await self._bump_nodes(s, [Selection.of(sub)])
                await s.commit()
                self._push(nodes)
        return sub

    async def unblock(self, client_id: str) -> Subscriber:
        """Idempotent. An unblocked client whose time or data ran out is expired/limited, not active."""
        async with self._sessions() as s:
            sub = await self._get(s, client_id)
            if sub.status == "blocked":
                sub.status = scheduled_status(sub, utcnow())
                nodes = await self._bump_nodes(s, [Selection.of(sub)])
                await s.commit()
                self._push(nodes)
        return sub

    async def rotate(self, client_id: str) -> Subscriber:
        """New credentials and a new subscription URL; the old ones stop working on every node."""
        async with self._sessions() as s:
            sub = await self._get(s, client_id)
            sub.credential_uuid = str(uuid.uuid4())
            sub.short_uuid = new_short_uuid()
            nodes = await self._bump_nodes(s, [Selection.of(sub)])
            await s.commit()
            self._push(nodes)
        return sub

    async def reset_usage(self, client_id: str) -> Subscriber:
        """Start counting towards the data limit from zero (the hourly history is kept)."""
        now = utcnow()
        async with self._sessions() as s:
            sub = await self._get(s, client_id)
            sub.used_upload_bytes = sub.used_download_bytes = 0
            sub.usage_reset_at = now
            nodes: list[str] = []
            if sub.status == "limited":
                sub.status = scheduled_status(sub, now)
                nodes = await self._bump_nodes(s, [Selection.of(sub)])
            await s.commit()
            self._push(nodes)
        return sub

    # -- the schedule (seed 004's deactivate_expired) --------------------------------------------------------
    async def deactivate_expired(self) -> dict[str, int]:
        """Active clients whose time ran out become expired, those at their data limit limited; their
        access is removed from the nodes and each change is written to the operations log."""
        now = utcnow()
        used = Subscriber.used_upload_bytes + Subscriber.used_download_bytes
        changed: dict[str, int] = {}
        async with self._sessions() as s:
            rows = (await s.scalars(select(Subscriber).where(
                Subscriber.status == "active",
                or_(Subscriber.expires_at <= now,
                    (Subscriber.data_limit_bytes.is_not(None)) & (used >= Subscriber.data_limit_bytes))))).all()
            if not rows:
                return changed
            for sub in rows:
                sub.status = scheduled_status(sub, now)
                changed[sub.status] = changed.get(sub.status, 0) + 1
                s.add(Operation(actor="scheduler", action="deactivate_expired", target_type="client",
                                target_id=sub.id, client_id=sub.id,
                                payload={"status": sub.status, "expires_at": sub.expires_at.isoformat(),
                                         "used_bytes": sub.used_upload_bytes + sub.used_download_bytes,
                                         "data_limit_bytes": sub.data_limit_bytes},
                                result="success", status_code=200, request_id="scheduler"))
            nodes = await self._bump_nodes(s, [Selection.of(sub) for sub in rows])
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
    async def usage(self, client_id: str, days: int) -> dict[str, Any]:
        """Transfer per node per day (UTC) over the last `days` days, with totals."""
        since = utcnow().replace(hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(days=days - 1)
        async with self._sessions() as s:
            sub = await self._get(s, client_id)
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
        """Every V2Ray inbound of every running node the subscriber may use (what their app connects to)."""
        if not self.settings.v2ray_enabled:
            return []
        async with self._sessions() as s:
            nodes = await reachable_nodes(s)
        out = []
        for node in nodes:
            if not allowed_on(sub.node_ids, sub.regions, node.uuid, node.region):
                continue
            for inbound in node_v2ray_inbounds(node, self.settings.v2ray_port, self.settings.v2ray_vless_port):
                out.append(Endpoint(name=f"{node.name} {inbound['protocol']}", host=node.public_ip,
                                    port=int(inbound["port"]), protocol=inbound["protocol"]))
        return out

    def subscription_url(self, sub: Subscriber) -> str:
        return f"{self.settings.http_url}/sub/{sub.short_uuid}"

    # -- internals ------------------------------------------------------------------------------------------
    async def _check_selection(self, s: AsyncSession, node_ids: list[str] | None,
                               regions: list[str] | None) -> Selection:
        if node_ids:
            known = set((await s.scalars(select(Node.uuid).where(Node.uuid.in_(node_ids),
                                                                 Node.is_deleted.is_(False)))).all())
            unknown = [n for n in node_ids if n not in known]
            if unknown:
                raise ValidationFailed(f"unknown node {unknown[0]}", {"node_ids": f"unknown node {unknown[0]}"})
        if regions:
            configured = {r.code for r in self.settings.all_regions()}
            unknown = [r for r in regions if r not in configured]
            if unknown:
                raise ValidationFailed(f"unknown region '{unknown[0]}' (configured: {', '.join(sorted(configured))})",
                                       {"regions": f"unknown region {unknown[0]}"})
        return Selection(sorted(set(node_ids)) if node_ids else None, sorted(set(regions)) if regions else None)

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


def _expiry(values: dict[str, Any], now: dt.datetime) -> dt.datetime:
    """expires_at from `days` (from now) or an explicit `expires_at`; exactly one must be given."""
    days, expires_at = values.get("days"), values.get("expires_at")
    if days is not None and expires_at is not None:
        raise ValidationFailed("give either days or expires_at, not both", {"days": "conflicts with expires_at"})
    if days is not None:
        return now + dt.timedelta(days=days)
    if expires_at is not None:
        return expires_at
    raise ValidationFailed("days or expires_at is required", {"days": "required unless expires_at is given"})


def _limit_bytes(gb: float | None) -> int | None:
    """GB (GiB, as V2Ray panels count) to bytes; None or 0 means no limit."""
    return int(gb * GIB) if gb else None
