"""Batched writes of fast-changing node fields (liveness, applied revision, agent facts).

Heartbeats and applied reports from a thousand agents would be a thousand tiny transactions; instead the
hub records the newest values here and one task writes them all every ``interval`` seconds, then
publishes one ``update`` event per changed node.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import defaultdict
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controller.events import Event, EventBus
from controller.models import Node
from controller.serializers import node_to_dict

log = logging.getLogger("vpnfleet.nodes")

#: fields whose change is worth an SSE "update" event (last_seen_at alone is not)
_NOTEWORTHY = {"online", "applied_revision", "component_status", "agent_version", "status"}


@functools.cache
def _update_statement(keys: tuple[str, ...]) -> Any:
    table = Node.__table__
    return (update(table).where(table.c.uuid == bindparam("_uuid"))
            .values({k: bindparam(f"_{k}", type_=table.c[k].type) for k in keys}))


class NodeStateWriter:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], bus: EventBus, interval: float = 0.5) -> None:
        self._sessions = sessions
        self._bus = bus
        self._interval = interval
        self._pending: dict[str, dict[str, Any]] = {}
        self._wake = asyncio.Event()

    def update(self, node_uuid: str, **fields: Any) -> None:
        self._pending.setdefault(node_uuid, {}).update(fields)
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._interval)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # keep the loop alive; the values stay pending and are retried
                log.exception("writing node state failed; will retry")
                self._wake.set()

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        try:
            async with self._sessions() as s:
                # one executemany per set of changed fields, not one UPDATE per node
                groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
                for node_uuid, fields in batch.items():
                    groups[tuple(sorted(fields))].append({"_uuid": node_uuid, **{f"_{k}": v for k, v in fields.items()}})
                conn = await s.connection()
                for keys, params in groups.items():
                    await conn.execute(_update_statement(keys), params)
                await s.commit()
                noteworthy = [u for u, f in batch.items() if _NOTEWORTHY & f.keys()]
                rows = (await s.scalars(select(Node).where(Node.uuid.in_(noteworthy)))).all() if noteworthy else []
        except Exception:
            for node_uuid, fields in batch.items():  # newer values win over the failed ones
                self._pending[node_uuid] = {**fields, **self._pending.get(node_uuid, {})}
            raise
        for node in rows:
            if not node.is_deleted:  # a deleted node's last word was its "delete" event
                self._bus.publish(Event("update", {"node": node_to_dict(node)}, node_id=node.uuid))
