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

A node speaks only for itself (DESIGN.md, security rule 2). Every entry of a batch is checked on its own;
a refused entry is dropped and counted (Node.telemetry_rejected, and a warning per node at most once a
minute), the rest of the batch is stored, and the batch's seq is stored and acknowledged as usual, so the
agent does not send it again. Checked values never reach anything that could raise (datetime, the database's
64-bit integers), so no hostile batch can fail or slow a write for the other nodes. Reasons:

* ``foreign_user`` / ``foreign_peer``: usage of a subscriber the node may not serve (``allowed_on`` its
  node/region selection, whatever the subscriber's status, so a just-blocked user's last bytes count) or of a
  WireGuard peer of another node's server. A V2Ray email that is no subscriber at all (the local relay's own
  user, a deleted subscriber) and a peer id that is no peer (deleted) are ignored, as always, not counted.
* ``over_link``: more bytes than the node's link could have carried. Per node, a budget (both directions)
  accrues at ``telemetry_max_link_mbps`` from the node's creation (after a controller start: creation to now,
  plus LINK_SLACK_SECONDS) and every accepted usage entry (up + down) is taken from it; metric samples'
  network counters have a budget of their own. Capacity a node did not use stays available, which lets the
  replay of a long outage through (and a spool overflow's batch that carries many hours of traffic): no node
  ever reports more than its link could have carried since it was created. A refused entry costs nothing.
* ``sample_time``: a sample stamped more than ``telemetry_max_clock_skew`` ahead of the controller's clock,
  before the node was created (minus the same skew), or not after the node's previous accepted sample.
* ``sample_value``: a sample with a NaN or infinite cpu/load reading.
* ``sample_count``: samples beyond MAX_SAMPLES_PER_BATCH in one batch (an agent sends one).
* ``bad_seq``: a batch whose seq does not fit the database (the batch is not stored; the stored seq is acked).

Clamped, not refused (the sample still counts; logged with the refusals): cpu_percent to 0..100 (the agent
reports the whole machine's busy share), load averages to 0..MAX_LOAD, byte totals to MAX_GAUGE_BYTES and
used memory/swap/disk to their totals, uptime to MAX_UPTIME_SECONDS, dropped_samples to MAX_DROPPED_PER_BATCH.
A handshake time outside the node's lifetime (plus skew) is ignored; the peer's bytes still count.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from sqlalchemy import BigInteger, bindparam, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controller.credentials import subscriber_of
from controller.errors import ValidationFailed
from controller.models import (MetricBucket, Node, Subscriber, SubscriberUsage, WireguardClient, WireguardServer,
                               WireguardUsage, utcnow)
from controller.services.desired_state import allowed_on
from controller.settings import Settings
from protos import agent_pb2

log = logging.getLogger("vpnfleet.telemetry")

BUCKET = dt.timedelta(minutes=1)
#: Pauses between tries of a write that failed (then each node's batches are tried on their own).
STORE_RETRY_PAUSES = (0.5, 1.0, 2.0)
MAX_HISTORY_POINTS = 2000

#: Link capacity granted on top of the elapsed time (agents' sampling and sending take time too).
LINK_SLACK_SECONDS = 60.0
#: A node's unused link budget never exceeds this: keeps every sum far from the database's 64-bit limit.
MAX_LINK_CREDIT = float(2**53)
MAX_SAMPLES_PER_BATCH = 60
MAX_GAUGE_BYTES = 2**53
MAX_LOAD = 1e6
MAX_UPTIME_SECONDS = 100 * 365 * 86400
MAX_DROPPED_PER_BATCH = 10**7
#: The database's BIGINT; a seq above it cannot be stored.
MAX_SEQ = 2**63 - 1
#: Subscriber ids are uuids; a longer email is no subscriber (and is not looked up).
MAX_SUBSCRIBER_ID = 36
#: At most one warning per node this often, with the counts since the previous one.
REFUSAL_LOG_SECONDS = 60.0

FOREIGN_USER, FOREIGN_PEER, OVER_LINK = "foreign_user", "foreign_peer", "over_link"
SAMPLE_TIME, SAMPLE_VALUE, SAMPLE_COUNT, BAD_SEQ = "sample_time", "sample_value", "sample_count", "bad_seq"


def hour_start(ts_ms: int) -> dt.datetime:
    """The hour a batch's usage is counted in (now, for a batch without a timestamp)."""
    seconds = ts_ms // 1000 if ts_ms else int(utcnow().timestamp())
    return dt.datetime.fromtimestamp(seconds - seconds % 3600, dt.timezone.utc)


def bucket_start(ts_ms: int) -> dt.datetime:
    seconds = ts_ms // 1000
    return dt.datetime.fromtimestamp(seconds - seconds % 60, dt.timezone.utc)


def peer_number(peer_id: str) -> int | None:
    """The WireGuard client id a PeerTraffic names, or None when it names none (ASCII digits, fits BIGINT)."""
    return int(peer_id) if peer_id.isascii() and peer_id.isdigit() and len(peer_id) <= 18 else None


def sample_problem(s: agent_pb2.MetricSample, earliest_ms: int, latest_ms: int) -> str | None:
    """Why a sample is refused (None: it is not). earliest_ms is exclusive, latest_ms inclusive."""
    if not earliest_ms < s.ts_ms <= latest_ms:
        return SAMPLE_TIME
    if not all(map(math.isfinite, (s.cpu_percent, s.load1, s.load5, s.load15))):
        return SAMPLE_VALUE
    return None


def clamp_sample(s: agent_pb2.MetricSample) -> agent_pb2.MetricSample | None:
    """A copy of a (finite) sample with its gauges brought into range, or None when they already are."""
    mem_total, swap_total, disk_total = (min(v, MAX_GAUGE_BYTES) for v in (s.mem_total, s.swap_total, s.disk_total))
    fixed = dict(
        cpu_percent=min(max(s.cpu_percent, 0.0), 100.0),
        load1=min(max(s.load1, 0.0), MAX_LOAD), load5=min(max(s.load5, 0.0), MAX_LOAD),
        load15=min(max(s.load15, 0.0), MAX_LOAD),
        mem_total=mem_total, mem_used=min(s.mem_used, mem_total), swap_total=swap_total,
        swap_used=min(s.swap_used, swap_total), disk_total=disk_total, disk_used=min(s.disk_used, disk_total),
        uptime_seconds=min(s.uptime_seconds, MAX_UPTIME_SECONDS),
    )
    if all(getattr(s, name) == value for name, value in fixed.items()):
        return None
    copy = agent_pb2.MetricSample()
    copy.CopyFrom(s)
    for name, value in fixed.items():
        setattr(copy, name, value)
    return copy


@dataclass
class _Pending:
    node_uuid: str
    #: the session epoch of the stream the batch came on (see begin_session)
    epoch: int
    batch: agent_pb2.TelemetryBatch
    #: called with the acknowledged seq once stored (sends TelemetryAck on the batch's stream)
    ack: Callable[[int], None]


@dataclass(frozen=True)
class _NodeInfo:
    """What the checks need of a node's row (neither changes after creation)."""

    region: str
    #: unix seconds
    created: float


@dataclass
class _LinkBudget:
    """Bytes (both directions together) the node's link could have carried that it has not reported yet."""

    usage: float
    nic: float
    #: unix seconds of the last refill
    at: float

    def take(self, kind: str, cost: int) -> bool:
        """Take cost bytes from the usage or nic budget; False (nothing taken) when they do not fit."""
        left = getattr(self, kind)
        if cost > left:
            return False
        setattr(self, kind, left - cost)
        return True


@dataclass
class _Members:
    """Who may report usage, read once per write: subscriber id -> (node_ids, regions); peer id -> its node."""

    subscribers: dict[str, tuple[list[str] | None, list[str] | None]] = field(default_factory=dict)
    peers: dict[int, str] = field(default_factory=dict)


@dataclass
class _Write:
    """One write's telemetry, checked and summed. Applied to the ingest's state only after the commit."""

    buckets: dict[tuple[str, dt.datetime], dict[str, Any]] = field(default_factory=lambda: defaultdict(_empty_bucket))
    #: WireGuard client id -> {"hours": {hour: [rx, tx]}, "handshake_ms"}; only the peer's own node gets here
    peers: dict[int, dict[str, Any]] = field(
        default_factory=lambda: defaultdict(lambda: {"hours": {}, "handshake_ms": 0}))
    #: V2Ray usage: (subscriber id, node, hour) -> [upload, download]
    users: dict[tuple[str, str, dt.datetime], list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    new_seq: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    refused: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    clamped: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    budgets: dict[str, _LinkBudget] = field(default_factory=dict)
    last_sample_ms: dict[str, int] = field(default_factory=dict)
    latest: dict[str, agent_pb2.MetricSample] = field(default_factory=dict)
    #: per node, the milliseconds the latest sample covers (since the sample before it; 0: not known)
    latest_span_ms: dict[str, int] = field(default_factory=dict)


class _RefusalLog:
    """Warns about a node's refused telemetry at most once per ``every`` seconds, with the counts since."""

    def __init__(self, every: float = REFUSAL_LOG_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._every = every
        self._clock = clock
        self._pending: dict[str, tuple[Counter[str], int]] = {}
        self._last: dict[str, float] = {}

    def add(self, node: str, refused: Counter[str], clamped: int) -> None:
        counts, clamps = self._pending.get(node, (Counter(), 0))
        self._pending[node] = (counts + refused, clamps + clamped)

    def flush(self) -> None:
        now = self._clock()
        for node in [n for n in self._pending if now - self._last.get(n, -math.inf) >= self._every]:
            counts, clamps = self._pending.pop(node)
            since = now - self._last[node] if node in self._last else None
            self._last[node] = now
            reasons = ", ".join(f"{reason}={n}" for reason, n in sorted(counts.items())) or "none"
            log.warning("node %s: refused %d telemetry entries%s (%s); %d values clamped", node,
                        sum(counts.values()), f" in the last {since:.0f}s" if since else "", reasons, clamps)

    def forget(self, node: str) -> None:
        self._pending.pop(node, None)
        self._last.pop(node, None)


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
                 max_batches_per_write: int = 2000, linger: float = 0.25, *,
                 max_link_mbps: float = Settings.telemetry_max_link_mbps,
                 max_clock_skew: float = Settings.telemetry_max_clock_skew,
                 clock: Callable[[], float] = time.time) -> None:
        self._sessions = sessions
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(queue_size)
        self._max = max_batches_per_write
        #: after the first waiting batch, gather for this long: one transaction for many agents' batches
        self._linger = linger
        #: bytes per second a node's link carries, both directions together
        self._link_rate = max_link_mbps * 1_000_000 / 8 * 2
        self._skew_ms = int(max_clock_skew * 1000)
        #: wall clock (unix seconds): node creation times are wall-clock times
        self._clock = clock
        #: highest stored seq per node (primed from the database when a session opens)
        self.stored_seq: dict[str, int] = {}
        #: per node, the session epoch whose batches are stored; absent: none (not connected, or resyncing)
        self._epochs: dict[str, int] = {}
        #: nodes in a write that failed: their stored seq is read back from the database before the next one
        self._uncertain: set[str] = set()
        #: region and creation time per node (read with the first batch after a start)
        self._info: dict[str, _NodeInfo] = {}
        self._budgets: dict[str, _LinkBudget] = {}
        #: newest accepted sample time per node: samples must move forward
        self._last_sample_ms: dict[str, int] = {}
        self._refusals = _RefusalLog()
        #: newest sample per node, for "current" metrics
        self.latest: dict[str, agent_pb2.MetricSample] = {}
        #: per node, its newest sample as the fleet overview shows it (traffic_now), for the events stream
        self.now: dict[str, dict[str, Any]] = {}
        self.batches_stored = 0
        self.duplicates_ignored = 0
        self.entries_refused = 0
        #: called after subscribers' V2Ray usage was stored (the subscriber service checks data limits)
        self.on_subscriber_usage: Callable[[], None] = lambda: None
        #: called with {node: traffic_now(...)} of the nodes whose newest sample changed (live fleet figures)
        self.on_latest: Callable[[dict[str, dict[str, Any]]], None] = lambda now: None
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
        now = self._clock()
        async with self._sessions() as s:
            nodes = {i.node_uuid for i in items}
            await self._load_nodes(s, nodes)
            w = _Write()
            fresh = self._fresh_batches(items, w)
            members = await _read_members(s, [item.batch for item in fresh])
            for item in fresh:
                self._check_batch(item.node_uuid, item.batch, members, w, now)
            conn = await s.connection()
            if w.buckets:  # one executemany for every bucket touched
                await conn.execute(_bucket_upsert(conn.dialect.name),
                                   [dict(node_uuid=u, bucket_start=b, **acc) for (u, b), acc in w.buckets.items()])
            await self._store_peer_usage(s, w.peers)
            stored_users = await self._store_subscriber_usage(s, w.users)
            touched = w.new_seq.keys() | w.refused.keys()
            if touched:
                await conn.execute(_SEQ_UPDATE, [
                    dict(u=u, seq=w.new_seq.get(u, self.stored_seq[u]), dropped=w.dropped[u],
                         rejected=sum(w.refused[u].values()) if u in w.refused else 0) for u in touched])
            await s.commit()
        self._uncertain.difference_update(nodes)
        self._applied(w)
        if stored_users:
            self.on_subscriber_usage()
        for item in items:
            if item.node_uuid in self.stored_seq:
                item.ack(self.stored_seq[item.node_uuid])

    async def _load_nodes(self, s: AsyncSession, nodes: set[str]) -> None:
        """Read the stored seq of nodes not known (or uncertain) and the region and creation of new ones."""
        missing_seq = (nodes - self.stored_seq.keys()) | (nodes & self._uncertain)
        missing = missing_seq | (nodes - self._info.keys())
        if not missing:
            return
        rows = await s.execute(select(Node.uuid, Node.telemetry_seq, Node.region, Node.created_at)
                               .where(Node.uuid.in_(missing)))
        for uuid, seq, region, created in rows:
            if uuid in missing_seq:
                self.stored_seq[uuid] = seq
            self._info[uuid] = _NodeInfo(region, created.timestamp() if created else 0.0)

    def _fresh_batches(self, items: list[_Pending], w: _Write) -> list[_Pending]:
        """The batches to store: of nodes that exist, above the stored seq (re-sends are only acknowledged)."""
        fresh = []
        for item in items:
            node = item.node_uuid
            if node not in self.stored_seq or node not in self._info:
                continue  # node deleted meanwhile
            if item.batch.seq > MAX_SEQ:
                w.refused[node][BAD_SEQ] += 1
                continue
            if item.batch.seq <= w.new_seq.get(node, self.stored_seq[node]):
                self.duplicates_ignored += 1
                continue
            w.new_seq[node] = item.batch.seq
            fresh.append(item)
        return fresh

    def _budget(self, node: str, w: _Write, now: float) -> _LinkBudget:
        """The node's link budget for this write (a copy: kept only if the write commits)."""
        if node not in w.budgets:
            had = self._budgets.get(node)
            if had is None:  # first batch since the controller started: all the time since the node was created
                credit = self._link_rate * (max(0.0, now - self._info[node].created) + LINK_SLACK_SECONDS)
                had = _LinkBudget(credit, credit, now)
            gain = self._link_rate * max(0.0, now - had.at)
            w.budgets[node] = _LinkBudget(min(had.usage + gain, MAX_LINK_CREDIT),
                                          min(had.nic + gain, MAX_LINK_CREDIT), now)
        return w.budgets[node]

    def _check_batch(self, node: str, batch: agent_pb2.TelemetryBatch, members: _Members, w: _Write,
                     now: float) -> None:
        """Check every entry of one batch and add what passes to the write (never raises on hostile values)."""
        info = self._info[node]
        budget = self._budget(node, w, now)
        refused = w.refused[node]
        now_ms = int(now * 1000)
        floor_ms = int(info.created * 1000) - self._skew_ms
        latest_ms = now_ms + self._skew_ms
        w.dropped[node] += min(batch.dropped_samples, MAX_DROPPED_PER_BATCH)
        w.clamped[node] += batch.dropped_samples > MAX_DROPPED_PER_BATCH
        first_ms = 0
        if len(batch.metrics) > MAX_SAMPLES_PER_BATCH:
            refused[SAMPLE_COUNT] += len(batch.metrics) - MAX_SAMPLES_PER_BATCH
        for sample in batch.metrics[:MAX_SAMPLES_PER_BATCH]:
            sampled_ms = w.last_sample_ms.get(node, self._last_sample_ms.get(node))  # the sample before, if any
            previous_ms = floor_ms if sampled_ms is None else sampled_ms
            problem = sample_problem(sample, max(floor_ms, previous_ms), latest_ms)
            if problem is None and not budget.take("nic", sample.net_rx_bytes + sample.net_tx_bytes):
                problem = OVER_LINK
            if problem is not None:
                refused[problem] += 1
                continue
            clamped = clamp_sample(sample)
            if clamped is not None:
                w.clamped[node] += 1
                sample = clamped
            w.last_sample_ms[node] = sample.ts_ms
            first_ms = first_ms or sample.ts_ms
            _add_sample(w.buckets[(node, bucket_start(sample.ts_ms))], sample)
            w.latest[node] = sample
            w.latest_span_ms[node] = sample.ts_ms - sampled_ms if sampled_ms is not None else 0
        if not (batch.wireguard_peers or batch.v2ray_users):
            return
        hour = hour_start(first_ms or now_ms)  # a batch's usage counts in its (first accepted) sample's hour
        handshake_floor, handshake_ceiling = int(info.created * 1000) - self._skew_ms, latest_ms
        for peer in batch.wireguard_peers:
            client_id = peer_number(peer.peer_id)
            owner = members.peers.get(client_id) if client_id is not None else None
            if owner is None:
                continue  # not a peer (deleted meanwhile): ignored, as ever
            if owner != node:
                refused[FOREIGN_PEER] += 1
            elif not budget.take("usage", peer.rx_bytes + peer.tx_bytes):
                refused[OVER_LINK] += 1
            else:
                acc = w.peers[client_id]
                acc["hours"][hour] = [a + b for a, b in zip(acc["hours"].get(hour, [0, 0]),
                                                            (peer.rx_bytes, peer.tx_bytes))]
                if handshake_floor <= peer.last_handshake_ms <= handshake_ceiling:
                    acc["handshake_ms"] = max(acc["handshake_ms"], peer.last_handshake_ms)
        for user in batch.v2ray_users:
            subscriber = subscriber_of(user.email)  # the per-node user and the legacy "+shared" one alike
            where = members.subscribers.get(subscriber)
            if where is None:
                continue  # not a subscriber (the local relay's user, a deleted subscriber): ignored, as ever
            if not allowed_on(where[0], where[1], node, info.region):
                refused[FOREIGN_USER] += 1
            elif not budget.take("usage", user.uplink_bytes + user.downlink_bytes):
                refused[OVER_LINK] += 1
            else:
                acc = w.users[(subscriber, node, hour)]
                acc[0] += user.uplink_bytes
                acc[1] += user.downlink_bytes

    def _applied(self, w: _Write) -> None:
        """The write committed: keep its sequences, budgets and sample times; report what was refused."""
        self.stored_seq.update(w.new_seq)
        self.batches_stored += len(w.new_seq)
        self._budgets.update(w.budgets)
        self._last_sample_ms.update(w.last_sample_ms)
        changed: dict[str, dict[str, Any]] = {}
        for node, sample in w.latest.items():
            latest = self.latest.get(node)
            if latest is None or sample.ts_ms >= latest.ts_ms:
                self.latest[node] = sample
                changed[node] = self.now[node] = traffic_now(sample, w.latest_span_ms.get(node, 0))
        if changed:
            self.on_latest(changed)
        for node in w.refused.keys() | {n for n, c in w.clamped.items() if c}:
            refused = w.refused.get(node, Counter())
            self.entries_refused += sum(refused.values())
            if refused or w.clamped.get(node):
                self._refusals.add(node, +refused, w.clamped.get(node, 0))
        self._refusals.flush()

    @staticmethod
    async def _store_peer_usage(s: AsyncSession, peers: dict[int, dict[str, Any]]) -> None:
        """WireGuard peers' transfer (checked: each peer's own node): hourly rows, totals, latest handshake."""
        if not peers:
            return
        usage, totals = [], []
        for client_id, acc in peers.items():
            usage += [dict(client_id=client_id, hour_start=hour, rx_bytes=rx, tx_bytes=tx)
                      for hour, (rx, tx) in acc["hours"].items()]
            handshake = (dt.datetime.fromtimestamp(acc["handshake_ms"] / 1000, dt.timezone.utc)
                         if acc["handshake_ms"] else None)
            totals.append(dict(cid=client_id, rx=sum(rx for rx, _ in acc["hours"].values()),
                               tx=sum(tx for _, tx in acc["hours"].values()), handshake=handshake))
        conn = await s.connection()
        if usage:  # as with the metric buckets: one executemany, statement built once
            await conn.execute(_usage_upsert(conn.dialect.name), usage)
        await conn.execute(_CLIENT_TOTALS_UPDATE, totals)

    @staticmethod
    async def _store_subscriber_usage(s: AsyncSession, users: dict[tuple[str, str, dt.datetime], list[int]]) -> int:
        """V2Ray users' transfer (checked: subscribers allowed on the node): hourly rows per subscriber and node,
        and the totals that drive data limits. Returns how many subscribers had usage stored."""
        if not users:
            return 0
        usage = [dict(client_id=sub, node_uuid=node, hour_start=hour, upload_bytes=up, download_bytes=down)
                 for (sub, node, hour), (up, down) in users.items()]
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
        self.now.pop(node_uuid, None)
        self._info.pop(node_uuid, None)
        self._budgets.pop(node_uuid, None)
        self._last_sample_ms.pop(node_uuid, None)
        self._refusals.forget(node_uuid)


async def _read_members(s: AsyncSession, batches: Iterable[agent_pb2.TelemetryBatch]) -> _Members:
    """Where the subscribers and peers these batches report may be used: one query per 500 of each."""
    subscribers: set[str] = set()
    peers: set[int] = set()
    for batch in batches:
        subscribers.update(sub for u in batch.v2ray_users if len(sub := subscriber_of(u.email)) <= MAX_SUBSCRIBER_ID)
        peers.update(n for p in batch.wireguard_peers if (n := peer_number(p.peer_id)) is not None)
    members = _Members()
    ids = list(subscribers)
    for i in range(0, len(ids), 500):
        rows = await s.execute(select(Subscriber.id, Subscriber.node_ids, Subscriber.regions)
                               .where(Subscriber.id.in_(ids[i:i + 500])))
        members.subscribers.update({sid: (node_ids, regions) for sid, node_ids, regions in rows})
    numbers = list(peers)
    for i in range(0, len(numbers), 500):
        rows = await s.execute(select(WireguardClient.id, WireguardServer.node_uuid)
                               .join(WireguardServer, WireguardServer.id == WireguardClient.server_id)
                               .where(WireguardClient.id.in_(numbers[i:i + 500])))
        members.peers.update({cid: node for cid, node in rows})
    return members


_NODES = Node.__table__
_SEQ_UPDATE = (update(_NODES).where(_NODES.c.uuid == bindparam("u"))
               .values(telemetry_seq=bindparam("seq", type_=_NODES.c.telemetry_seq.type),
                       telemetry_dropped=_NODES.c.telemetry_dropped + bindparam("dropped", type_=BigInteger()),
                       telemetry_rejected=_NODES.c.telemetry_rejected + bindparam("rejected", type_=BigInteger())))


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


def traffic_now(s: agent_pb2.MetricSample, span_ms: int) -> dict[str, Any]:
    """A node's newest sample as the fleet overview shows it: CPU, memory and its traffic per second. A sample's
    byte counts are since the sample before it, so the rates are known once the node sent two (else None)."""
    seconds = span_ms / 1000

    def rate(n: int) -> float | None:
        return round(n / seconds, 1) if seconds > 0 else None

    return {"time": dt.datetime.fromtimestamp(s.ts_ms / 1000, dt.timezone.utc).isoformat().replace("+00:00", "Z"),
            "cpu_percent": round(s.cpu_percent, 2),
            "memory_percent": round(100 * s.mem_used / s.mem_total, 2) if s.mem_total else 0.0,
            "rx_bytes_per_second": rate(s.net_rx_bytes), "tx_bytes_per_second": rate(s.net_tx_bytes)}


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
