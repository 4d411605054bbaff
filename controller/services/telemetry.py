"""Telemetry ingestion (exactly once) and the metrics history it feeds.

Agents send sequenced TelemetryBatch messages. One writer task gathers whatever batches are waiting, stores
them in a single transaction together with each node's new highest sequence number, and only then
acknowledges them. A batch whose sequence is not above the stored one is a re-send: acknowledged again,
never stored twice. Samples are rolled up into one-minute buckets (MetricBucket) with retention.

Only the node's current stream is stored (begin_session): batches still queued from a replaced stream are
skipped, because the agent re-sends whatever the new stream's Welcome does not acknowledge.

A write that fails is tried again (a commit that raised may still have landed, so the nodes' stored
sequences are read back from the database first: nothing is counted twice). If it keeps failing, each node's
batches are tried on their own, so one node's bad batch cannot hold back the others; a node whose batches
still fail is resynchronised: its stream is closed (on_store_failed) and nothing more of it is stored or
acknowledged until it reconnects, so a later batch can never be acknowledged over one that was not stored.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable

from sqlalchemy import BigInteger, bindparam, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controller.errors import ValidationFailed
from controller.models import (MetricBucket, Node, Subscriber, SubscriberUsage, WireguardClient, WireguardUsage,
                               utcnow)
from protos import agent_pb2

log = logging.getLogger("vpnfleet.telemetry")

BUCKET = dt.timedelta(minutes=1)
#: Pauses between tries of a write that failed (then each node's batches are tried on their own).
STORE_RETRY_PAUSES = (0.5, 1.0, 2.0)
MAX_HISTORY_POINTS = 2000


def hour_start(ts_ms: int) -> dt.datetime:
    """The hour a batch's usage is counted in (now, for a batch without a timestamp)."""
    seconds = ts_ms // 1000 if ts_ms else int(utcnow().timestamp())
    return dt.datetime.fromtimestamp(seconds - seconds % 3600, dt.timezone.utc)


def bucket_start(ts_ms: int) -> dt.datetime:
    seconds = ts_ms // 1000
    return dt.datetime.fromtimestamp(seconds - seconds % 60, dt.timezone.utc)


@dataclass
class _Pending:
    node_uuid: str
    #: the session epoch of the stream the batch came on (see begin_session)
    epoch: int
    batch: agent_pb2.TelemetryBatch
    #: called with the acknowledged seq once stored (sends TelemetryAck on the batch's stream)
    ack: Callable[[int], None]


def _add_sample(acc: dict[str, Any], s: agent_pb2.MetricSample) -> None:
    acc["samples"] += 1
    acc["cpu_sum"] += s.cpu_percent
    acc["cpu_max"] = max(acc["cpu_max"], s.cpu_percent)
    acc["mem_used_sum"] += s.mem_used
    acc["swap_used_sum"] += s.swap_used
    acc["net_rx"] += s.net_rx_bytes
    acc["net_tx"] += s.net_tx_bytes
    acc["load1_sum"] += s.load1
    # gauges: the newest reading wins
    acc.update(mem_total=s.mem_total, swap_total=s.swap_total, disk_used=s.disk_used,
               disk_total=s.disk_total, uptime=s.uptime_seconds)


def _empty_bucket() -> dict[str, Any]:
    return dict(samples=0, cpu_sum=0.0, cpu_max=0.0, mem_used_sum=0.0, swap_used_sum=0.0, net_rx=0, net_tx=0,
                load1_sum=0.0, mem_total=0, swap_total=0, disk_used=0, disk_total=0, uptime=0)


class TelemetryIngest:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], queue_size: int = 20_000,
                 max_batches_per_write: int = 2000, linger: float = 0.25) -> None:
        self._sessions = sessions
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(queue_size)
        self._max = max_batches_per_write
        #: after the first waiting batch, gather for this long: one transaction for many agents' batches
        self._linger = linger
        #: highest stored seq per node (primed from the database when a session opens)
        self.stored_seq: dict[str, int] = {}
        #: per node, the session epoch whose batches are stored; absent: none (not connected, or resyncing)
        self._epochs: dict[str, int] = {}
        #: nodes in a write that failed: their stored seq is read back from the database before the next one
        self._uncertain: set[str] = set()
        #: newest sample per node, for "current" metrics
        self.latest: dict[str, agent_pb2.MetricSample] = {}
        self.batches_stored = 0
        self.duplicates_ignored = 0
        #: called after subscribers' V2Ray usage was stored (the subscriber service checks data limits)
        self.on_subscriber_usage: Callable[[], None] = lambda: None
        #: called with the nodes whose batches could not be stored (the hub closes their streams)
        self.on_store_failed: Callable[[set[str]], None] = lambda nodes: None

    def begin_session(self, node_uuid: str, epoch: int, stored_seq: int) -> int:
        """A new stream for the node: from now on only its batches are stored. stored_seq is the node's
        telemetry_seq as just read from the database. Returns the seq the Welcome acknowledges."""
        self._epochs[node_uuid] = epoch
        # The writer may have stored one of the old stream's batches after the row was read: never go back.
        seq = max(self.stored_seq.get(node_uuid, 0), stored_seq)
        self.stored_seq[node_uuid] = seq
        return seq

    async def submit(self, node_uuid: str, epoch: int, batch: agent_pb2.TelemetryBatch,
                     ack: Callable[[int], None]) -> None:
        """Queue a batch; waits (back-pressure on that agent's stream) if the writer is behind."""
        await self._queue.put(_Pending(node_uuid, epoch, batch, ack))

    async def run(self) -> None:
        while True:
            items = [await self._queue.get()]
            await asyncio.sleep(self._linger)
            while len(items) < self._max and not self._queue.empty():
                items.append(self._queue.get_nowait())
            await self._store_or_resync(items)

    async def _store_or_resync(self, items: list[_Pending]) -> None:
        """Store items, trying again after a failure; resynchronise the nodes whose batches cannot be stored."""
        for attempt, pause in enumerate(STORE_RETRY_PAUSES):
            if await self._try_store(items, f"attempt {attempt + 1}"):
                return
            await asyncio.sleep(pause)
        by_node: dict[str, list[_Pending]] = defaultdict(list)
        for item in items:  # (batches of replaced streams are skipped by _store, as always)
            by_node[item.node_uuid].append(item)
        failed = {node for node, its in by_node.items() if not await self._try_store(its, f"node {node} alone")}
        if failed:
            # Nothing of theirs acknowledged: the agents keep the batches spooled and re-send them on a new stream.
            log.error("telemetry of %d nodes could not be stored; closing their streams", len(failed))
            for node in failed:
                self._epochs.pop(node, None)
            self.on_store_failed(failed)

    async def _try_store(self, items: list[_Pending], what: str) -> bool:
        try:
            await self._store(items)
        except Exception:
            self._uncertain.update(item.node_uuid for item in items)
            log.exception("storing %d telemetry batches failed (%s)", len(items), what)
            return False
        return True

    async def _store(self, items: list[_Pending]) -> None:
        items = [i for i in items if self._epochs.get(i.node_uuid) == i.epoch]  # current streams only
        if not items:
            return
        async with self._sessions() as s:
            nodes = {i.node_uuid for i in items}
            missing = (nodes - self.stored_seq.keys()) | (nodes & self._uncertain)
            if missing:
                rows = await s.execute(select(Node.uuid, Node.telemetry_seq).where(Node.uuid.in_(missing)))
                self.stored_seq.update({u: seq for u, seq in rows})
            buckets: dict[tuple[str, dt.datetime], dict[str, Any]] = defaultdict(_empty_bucket)
            peers: dict[int, dict[str, Any]] = defaultdict(lambda: {"hours": {}, "handshake_ms": 0})
            # V2Ray users: (subscriber id, node, hour) -> [upload, download]
            users: dict[tuple[str, str, dt.datetime], list[int]] = defaultdict(lambda: [0, 0])
            new_seq: dict[str, int] = {}
            dropped: dict[str, int] = defaultdict(int)
            for item in items:
                if item.node_uuid not in self.stored_seq:
                    continue  # node deleted meanwhile
                current = new_seq.get(item.node_uuid, self.stored_seq[item.node_uuid])
                if item.batch.seq <= current:
                    self.duplicates_ignored += 1
                    continue
                new_seq[item.node_uuid] = item.batch.seq
                dropped[item.node_uuid] += item.batch.dropped_samples
                for peer in item.batch.wireguard_peers:
                    if peer.peer_id.isdigit():
                        acc = peers[int(peer.peer_id)]
                        hour = hour_start(item.batch.metrics[0].ts_ms if item.batch.metrics else 0)
                        acc["hours"][hour] = [a + b for a, b in zip(acc["hours"].get(hour, [0, 0]),
                                                                    (peer.rx_bytes, peer.tx_bytes))]
                        acc["handshake_ms"] = max(acc["handshake_ms"], peer.last_handshake_ms)
                if item.batch.v2ray_users:
                    hour = hour_start(item.batch.metrics[0].ts_ms if item.batch.metrics else 0)
                    for user in item.batch.v2ray_users:
                        acc = users[(user.email, item.node_uuid, hour)]
                        acc[0] += user.uplink_bytes
                        acc[1] += user.downlink_bytes
                for sample in item.batch.metrics:
                    _add_sample(buckets[(item.node_uuid, bucket_start(sample.ts_ms))], sample)
                    latest = self.latest.get(item.node_uuid)
                    if latest is None or sample.ts_ms >= latest.ts_ms:
                        self.latest[item.node_uuid] = sample
            conn = await s.connection()
            if buckets:  # one executemany for every bucket touched
                await conn.execute(_bucket_upsert(conn.dialect.name),
                                   [dict(node_uuid=u, bucket_start=b, **acc) for (u, b), acc in buckets.items()])
            await self._store_peer_usage(s, peers)
            stored_users = await self._store_subscriber_usage(s, users)
            if new_seq:
                await conn.execute(_SEQ_UPDATE, [dict(u=u, seq=q, dropped=dropped[u]) for u, q in new_seq.items()])
            await s.commit()
        self._uncertain.difference_update(nodes)
        self.stored_seq.update(new_seq)
        self.batches_stored += len(new_seq)
        if stored_users:
            self.on_subscriber_usage()
        for item in items:
            if item.node_uuid in self.stored_seq:
                item.ack(self.stored_seq[item.node_uuid])

    @staticmethod
    async def _store_peer_usage(s: AsyncSession, peers: dict[int, dict[str, Any]]) -> None:
        """WireGuard peers' transfer: hourly usage rows and the clients' totals and latest handshake."""
        if not peers:
            return
        known = set((await s.scalars(select(WireguardClient.id).where(WireguardClient.id.in_(list(peers))))).all())
        usage, totals = [], []
        for client_id, acc in peers.items():
            if client_id not in known:
                continue  # deleted meanwhile
            usage += [dict(client_id=client_id, hour_start=hour, rx_bytes=rx, tx_bytes=tx)
                      for hour, (rx, tx) in acc["hours"].items()]
            handshake = (dt.datetime.fromtimestamp(acc["handshake_ms"] / 1000, dt.timezone.utc)
                         if acc["handshake_ms"] else None)
            totals.append(dict(cid=client_id, rx=sum(rx for rx, _ in acc["hours"].values()),
                               tx=sum(tx for _, tx in acc["hours"].values()), handshake=handshake))
        if not totals:
            return
        conn = await s.connection()
        if usage:  # as with the metric buckets: one executemany, statement built once
            await conn.execute(_usage_upsert(conn.dialect.name), usage)
        await conn.execute(_CLIENT_TOTALS_UPDATE, totals)

    @staticmethod
    async def _store_subscriber_usage(s: AsyncSession, users: dict[tuple[str, str, dt.datetime], list[int]]) -> int:
        """V2Ray users' transfer: hourly rows per subscriber and node, and the totals that drive data limits.
        Returns how many subscribers had usage stored."""
        if not users:
            return 0
        emails = list({email for email, _, _ in users})
        known: set[str] = set()
        for i in range(0, len(emails), 500):
            known.update((await s.scalars(select(Subscriber.id).where(Subscriber.id.in_(emails[i:i + 500])))).all())
        usage = [dict(client_id=email, node_uuid=node, hour_start=hour, upload_bytes=up, download_bytes=down)
                 for (email, node, hour), (up, down) in users.items() if email in known]
        if not usage:
            return 0  # deleted subscribers, or a user that is not a subscriber (the local relay's)
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for row in usage:
            totals[row["client_id"]][0] += row["upload_bytes"]
            totals[row["client_id"]][1] += row["download_bytes"]
        conn = await s.connection()
        await conn.execute(_subscriber_usage_upsert(conn.dialect.name), usage)
        await conn.execute(_SUBSCRIBER_TOTALS_UPDATE, [dict(sid=k, up=up, down=down) for k, (up, down) in totals.items()])
        return len(totals)

    def forget(self, node_uuid: str) -> None:
        self.stored_seq.pop(node_uuid, None)
        self._epochs.pop(node_uuid, None)
        self._uncertain.discard(node_uuid)
        self.latest.pop(node_uuid, None)


_NODES = Node.__table__
_SEQ_UPDATE = (update(_NODES).where(_NODES.c.uuid == bindparam("u"))
               .values(telemetry_seq=bindparam("seq", type_=_NODES.c.telemetry_seq.type),
                       telemetry_dropped=_NODES.c.telemetry_dropped + bindparam("dropped", type_=BigInteger())))


_CLIENTS = WireguardClient.__table__
_CLIENT_TOTALS_UPDATE = (
    update(_CLIENTS).where(_CLIENTS.c.id == bindparam("cid"))
    .values(bytes_received=_CLIENTS.c.bytes_received + bindparam("rx", type_=BigInteger()),
            bytes_sent=_CLIENTS.c.bytes_sent + bindparam("tx", type_=BigInteger()),
            # a batch without a handshake keeps the one stored
            last_handshake_at=func.coalesce(bindparam("handshake", type_=_CLIENTS.c.last_handshake_at.type),
                                            _CLIENTS.c.last_handshake_at))
)


_SUBSCRIBERS = Subscriber.__table__
_SUBSCRIBER_TOTALS_UPDATE = (
    update(_SUBSCRIBERS).where(_SUBSCRIBERS.c.id == bindparam("sid"))
    .values(used_upload_bytes=_SUBSCRIBERS.c.used_upload_bytes + bindparam("up", type_=BigInteger()),
            used_download_bytes=_SUBSCRIBERS.c.used_download_bytes + bindparam("down", type_=BigInteger()))
)


@functools.cache
def _subscriber_usage_upsert(dialect: str) -> Any:
    """INSERT ... ON CONFLICT DO UPDATE adding a batch's transfer to a subscriber's hour on a node."""
    table = SubscriberUsage.__table__
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    return stmt.on_conflict_do_update(
        index_elements=[table.c.client_id, table.c.node_uuid, table.c.hour_start],
        set_={"upload_bytes": table.c.upload_bytes + stmt.excluded.upload_bytes,
              "download_bytes": table.c.download_bytes + stmt.excluded.download_bytes})


@functools.cache
def _usage_upsert(dialect: str) -> Any:
    """INSERT ... ON CONFLICT DO UPDATE adding a batch's transfer to a peer's hour."""
    table = WireguardUsage.__table__
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    return stmt.on_conflict_do_update(index_elements=[table.c.client_id, table.c.hour_start], set_={
        "rx_bytes": table.c.rx_bytes + stmt.excluded.rx_bytes, "tx_bytes": table.c.tx_bytes + stmt.excluded.tx_bytes})


@functools.cache
def _bucket_upsert(dialect: str) -> Any:
    """INSERT ... ON CONFLICT DO UPDATE adding a batch's rollups to a minute bucket. Built once per dialect:
    constructing it per batch cost more CPU than the database work itself (bench/agents.py)."""
    table = MetricBucket.__table__
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    ex, c = stmt.excluded, table.c
    greatest = func.greatest if dialect == "postgresql" else func.max
    return stmt.on_conflict_do_update(index_elements=[c.node_uuid, c.bucket_start], set_={
        "samples": c.samples + ex.samples, "cpu_sum": c.cpu_sum + ex.cpu_sum,
        "cpu_max": greatest(c.cpu_max, ex.cpu_max), "mem_used_sum": c.mem_used_sum + ex.mem_used_sum,
        "swap_used_sum": c.swap_used_sum + ex.swap_used_sum, "net_rx": c.net_rx + ex.net_rx,
        "net_tx": c.net_tx + ex.net_tx, "load1_sum": c.load1_sum + ex.load1_sum,
        "mem_total": ex.mem_total, "swap_total": ex.swap_total, "disk_used": ex.disk_used,
        "disk_total": ex.disk_total, "uptime": ex.uptime,
    })


# -- reading --------------------------------------------------------------------------------------------------

def sample_to_dict(s: agent_pb2.MetricSample) -> dict[str, Any]:
    return {
        "time": dt.datetime.fromtimestamp(s.ts_ms / 1000, dt.timezone.utc).isoformat().replace("+00:00", "Z"),
        "cpu_percent": round(s.cpu_percent, 2),
        "memory": {"total": s.mem_total, "used": s.mem_used,
                   "usage_percent": round(100 * s.mem_used / s.mem_total, 2) if s.mem_total else 0.0},
        "swap": {"total": s.swap_total, "used": s.swap_used},
        "disk": {"total": s.disk_total, "used": s.disk_used,
                 "usage_percent": round(100 * s.disk_used / s.disk_total, 2) if s.disk_total else 0.0},
        "network": {"rx_bytes": s.net_rx_bytes, "tx_bytes": s.net_tx_bytes},
        "load_average": [round(s.load1, 2), round(s.load5, 2), round(s.load15, 2)],
        "uptime_seconds": s.uptime_seconds,
    }


async def metrics_history(s: AsyncSession, node_uuid: str, start: dt.datetime, end: dt.datetime,
                          interval: int) -> list[dict[str, Any]]:
    """Buckets between start and end merged into points of ``interval`` seconds (a multiple of 60)."""
    if interval < 60 or interval % 60:
        raise ValidationFailed("interval must be a multiple of 60 seconds", {"interval": "multiple of 60"})
    if end <= start:
        raise ValidationFailed("end_time must be after start_time", {"end_time": "must be after start_time"})
    if (end - start).total_seconds() / interval > MAX_HISTORY_POINTS:
        raise ValidationFailed(f"at most {MAX_HISTORY_POINTS} points per query; widen the interval",
                               {"interval": "too many points"})
    rows = (await s.scalars(
        select(MetricBucket).where(MetricBucket.node_uuid == node_uuid, MetricBucket.bucket_start >= start,
                                   MetricBucket.bucket_start < end).order_by(MetricBucket.bucket_start)
    )).all()
    points: dict[int, dict[str, Any]] = {}
    for b in rows:
        epoch = int(b.bucket_start.timestamp())
        key = epoch - epoch % interval
        p = points.setdefault(key, {**_empty_bucket()})
        for f in ("samples", "cpu_sum", "mem_used_sum", "swap_used_sum", "net_rx", "net_tx", "load1_sum"):
            p[f] += getattr(b, f)
        p["cpu_max"] = max(p["cpu_max"], b.cpu_max)
        p.update(mem_total=b.mem_total, disk_used=b.disk_used, disk_total=b.disk_total, uptime=b.uptime)
    out = []
    for key in sorted(points):
        p, n = points[key], max(points[key]["samples"], 1)
        out.append({
            "time": dt.datetime.fromtimestamp(key, dt.timezone.utc).isoformat().replace("+00:00", "Z"),
            "samples": p["samples"],
            "cpu_avg": round(p["cpu_sum"] / n, 2),
            "cpu_max": round(p["cpu_max"], 2),
            "mem_used_avg": int(p["mem_used_sum"] / n),
            "mem_total": p["mem_total"],
            "disk_used": p["disk_used"],
            "disk_total": p["disk_total"],
            "net_rx_bytes": p["net_rx"],
            "net_tx_bytes": p["net_tx"],
            "net_rx_bps": round(p["net_rx"] / interval, 1),
            "net_tx_bps": round(p["net_tx"] / interval, 1),
            "load1_avg": round(p["load1_sum"] / n, 2),
        })
    return out


async def prune_metrics(s: AsyncSession, retention_days: int) -> int:
    cutoff = utcnow() - dt.timedelta(days=retention_days)
    result = await s.execute(delete(MetricBucket).where(MetricBucket.bucket_start < cutoff))
    await s.commit()
    return result.rowcount or 0
