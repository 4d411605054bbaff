"""A node speaks only for itself: what the telemetry writer and the log store accept from a node, on a real
SQLite file (DESIGN.md, security rule 2)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import random
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from controller.credentials import shared_email
from controller.db import make_engine, make_sessionmaker, prepare_database
from controller.events import EventBus
from controller.models import (MetricBucket, Node, Subscriber, SubscriberUsage, WireguardClient, WireguardServer,
                               utcnow)
from controller.serializers import node_to_dict
from controller.services.logs import LogStore
from controller.services.telemetry import TelemetryIngest, _Pending, sample_to_dict
from protos import agent_pb2

GIB = 2**30
LONG_AGO = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)


def now_ms() -> int:
    return int(time.time() * 1000)


def sample(ts_ms: int | None = None, **fields) -> agent_pb2.MetricSample:
    values = dict(cpu_percent=5.0, mem_total=1000, mem_used=500, net_rx_bytes=100, net_tx_bytes=50)
    return agent_pb2.MetricSample(ts_ms=now_ms() if ts_ms is None else ts_ms, **{**values, **fields})


def batch(seq: int, users: dict[str, int] = {}, peers: dict[int | str, int] = {}, samples=None,
          **fields) -> agent_pb2.TelemetryBatch:
    """A batch with one sample (now) unless told otherwise; users: email -> download bytes; peers: id -> rx bytes."""
    b = agent_pb2.TelemetryBatch(seq=seq, metrics=[sample()] if samples is None else samples, **fields)
    for email, down in users.items():
        b.v2ray_users.add(email=email, uplink_bytes=down // 10, downlink_bytes=down)
    for peer_id, rx in peers.items():
        b.wireguard_peers.add(interface="wg0", public_key="k", peer_id=str(peer_id), rx_bytes=rx, tx_bytes=rx // 2)
    return b


class Fleet:
    """Node A (region "east") and node B (region "west"), one WireGuard peer each, and subscribers: one for
    A only, one for B's region, one allowed everywhere."""

    def __init__(self, sessions) -> None:
        self.sessions = sessions
        self.acks: dict[str, list[int]] = {"A": [], "B": [], "C": []}

    async def setup(self) -> "Fleet":
        async with self.sessions() as s:
            for name, region in (("A", "east"), ("B", "west")):
                s.add(Node(uuid=name, name=name, region=region, provider="local", status="running",
                           created_at=LONG_AGO))
            await s.flush()
            self.peer = {}
            for port, name in enumerate(("A", "B"), 51820):
                server = WireguardServer(node_uuid=name, name="wg0", interface="wg0", listen_port=port,
                                         ipv4_address="10.8.0.1/24", private_key="k", public_key="p")
                s.add(server)
                await s.flush()
                peer = WireguardClient(server_id=server.id, name=f"peer-{name}", public_key=f"pk{name}",
                                       ipv4_address="10.8.0.2/32")
                s.add(peer)
                await s.flush()
                self.peer[name] = peer.id
            self.sub = {}
            for username, where in (("only-a", {"node_ids": ["A"]}), ("west", {"regions": ["west"]}),
                                    ("everywhere", {})):
                sub = Subscriber(username=username, credential_uuid="c", credential_secret="x",
                                 short_uuid=username.ljust(22, "x"), status="active",
                                 expires_at=dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc), **where)
                s.add(sub)
                await s.flush()
                self.sub[username] = sub.id
            await s.commit()
        return self

    def pending(self, node: str, b: agent_pb2.TelemetryBatch) -> _Pending:
        return _Pending(node, 1, b, self.acks[node].append)

    async def node(self, name: str) -> Node:
        async with self.sessions() as s:
            return await s.scalar(select(Node).where(Node.uuid == name))

    async def used(self, username: str) -> int:
        async with self.sessions() as s:
            sub = await s.get(Subscriber, self.sub[username])
            return sub.used_upload_bytes + sub.used_download_bytes

    async def peer_bytes(self, name: str) -> int:
        async with self.sessions() as s:
            peer = await s.get(WireguardClient, self.peer[name])
            return peer.bytes_received + peer.bytes_sent


@pytest.fixture
async def db(tmp_path: Path):
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 't.db'}")
    await prepare_database(engine)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def fleet(db) -> Fleet:
    return await Fleet(db).setup()


def ingest_for(db, *nodes: str, **kwargs) -> TelemetryIngest:
    """A freshly started controller's writer with these nodes' streams open (epoch 1, nothing stored yet)."""
    ingest = TelemetryIngest(db, **kwargs)
    for node in nodes:
        ingest.begin_session(node, 1, 0)
    return ingest


# -- whose usage ----------------------------------------------------------------------------------------------

async def test_a_node_reports_only_its_own_subscribers_and_peers(fleet: Fleet) -> None:
    ingest = ingest_for(fleet.sessions, "A", "B")
    # node B's certificate speaks for node A's subscriber and peer (2 GiB: enough to reach a data limit)
    hostile = batch(1, users={fleet.sub["only-a"]: 2 * GIB, shared_email(fleet.sub["only-a"]): GIB,
                              fleet.sub["west"]: 1000, fleet.sub["everywhere"]: 2000},
                    peers={fleet.peer["A"]: 2 * GIB, fleet.peer["B"]: 300})
    await ingest._store([fleet.pending("B", hostile)])

    assert await fleet.used("only-a") == 0 and await fleet.peer_bytes("A") == 0
    assert await fleet.used("west") == 1100 and await fleet.used("everywhere") == 2200
    assert await fleet.peer_bytes("B") == 450
    b = await fleet.node("B")
    assert b.telemetry_rejected == 3 and b.telemetry_seq == 1 and fleet.acks["B"] == [1]
    assert node_to_dict(b)["agent"]["telemetry_rejected"] == 3
    assert (await fleet.node("A")).telemetry_rejected == 0
    async with fleet.sessions() as s:
        rows = (await s.execute(select(SubscriberUsage.client_id, SubscriberUsage.node_uuid))).all()
    assert sorted(rows) == sorted([(fleet.sub["west"], "B"), (fleet.sub["everywhere"], "B")])


async def test_own_usage_counts_whatever_the_status_and_shared_ids_count_for_their_subscriber(fleet: Fleet) -> None:
    async with fleet.sessions() as s:
        (await s.get(Subscriber, fleet.sub["only-a"])).status = "blocked"  # the last bytes before the block
        await s.commit()
    ingest = ingest_for(fleet.sessions, "A", "B")
    await ingest._store([
        fleet.pending("A", batch(1, users={fleet.sub["only-a"]: 1000, shared_email(fleet.sub["only-a"]): 500,
                                           fleet.sub["everywhere"]: 10, "vpnfleet-relay": 99,
                                           "d6a1b1e2-0000-4000-8000-000000000000": 5},  # deleted subscriber
                             peers={fleet.peer["A"]: 40, 99999: 7, "²": 1, "١٢": 1, "9" * 40: 1})),
        fleet.pending("B", batch(1, users={fleet.sub["everywhere"]: 20})),  # allowed everywhere: any node
    ])
    assert await fleet.used("only-a") == 1650  # the per-node user and the "+shared" one, up + down
    assert await fleet.used("everywhere") == 33 and await fleet.peer_bytes("A") == 60
    # the relay's user, deleted subscribers and ids that are no peer are ignored, not counted as refused
    assert (await fleet.node("A")).telemetry_rejected == 0 and (await fleet.node("B")).telemetry_rejected == 0


async def test_membership_is_read_once_per_write_not_per_entry(fleet: Fleet) -> None:
    from sqlalchemy import event

    ingest = ingest_for(fleet.sessions, "A", "B")
    await ingest._store([fleet.pending("A", batch(1)), fleet.pending("B", batch(1))])  # node rows read
    statements: list[str] = []
    engine = fleet.sessions.kw["bind"].sync_engine
    listener = lambda conn, cursor, stmt, *args: statements.append(stmt)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        items = [fleet.pending(node, batch(seq, users={fleet.sub["everywhere"]: 10, fleet.sub["only-a"]: 10},
                                           peers={fleet.peer["A"]: 1, fleet.peer["B"]: 1}, samples=[]))
                 for seq in (2, 3, 4) for node in ("A", "B")]
        await ingest._store(items)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    reads = [st for st in statements if st.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 2  # one for the subscribers, one for the peers
    assert (await fleet.node("B")).telemetry_rejected == 6  # 3 batches: only-a and A's peer each


# -- values ---------------------------------------------------------------------------------------------------

async def test_future_and_absurd_timestamps_are_refused_and_other_nodes_are_stored(fleet: Fleet) -> None:
    ingest = ingest_for(fleet.sessions, "A", "B")
    failed: list[set[str]] = []
    ingest.on_store_failed = failed.append
    t = now_ms()
    hostile = [batch(1, samples=[sample(t + 3600_000)]), batch(2, samples=[sample(2**62)]),
               batch(3, samples=[sample(-2**63)]),
               batch(4, samples=[sample(int(LONG_AGO.timestamp() * 1000) - 86400_000)]),  # before B was created
               batch(5, samples=[sample(t + 1000)], peers={fleet.peer["B"]: 10})]
    hostile[4].wireguard_peers[0].last_handshake_ms = 2**62  # ignored: the bytes still count
    items = [fleet.pending("B", b) for b in hostile] + [fleet.pending("A", batch(1, samples=[sample(t)]))]
    await ingest._store_or_resync(items)  # no retry, no resync: nothing raised

    assert failed == [] and fleet.acks["A"] == [1] and fleet.acks["B"] == [5] * 5
    b = await fleet.node("B")
    assert b.telemetry_seq == 5 and b.telemetry_rejected == 4
    assert await fleet.peer_bytes("B") == 15
    async with fleet.sessions() as s:
        peer = await s.get(WireguardClient, fleet.peer["B"])
        buckets = (await s.execute(select(MetricBucket.node_uuid, MetricBucket.samples))).all()
    assert peer.last_handshake_at is None
    assert sorted(buckets) == [("A", 1), ("B", 1)]
    # a sample not after the node's previous one is refused too (a minute bucket's count stays bounded)
    await ingest._store([fleet.pending("B", batch(6, samples=[sample(t + 1000)]))])
    assert (await fleet.node("B")).telemetry_rejected == 5


async def test_hostile_values_never_raise_and_never_reach_the_database(fleet: Fleet) -> None:
    rng = random.Random(8)
    extremes = [0, 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1]
    floats = [0.0, -1.0, 1e308, -1e308, math.nan, math.inf, -math.inf, 250.0]
    times = [0, -1, 2**62, -2**63, 2**63 - 1, now_ms(), now_ms() + 10**9]
    ingest = ingest_for(fleet.sessions, "A", "B")
    failed: list[set[str]] = []
    ingest.on_store_failed = failed.append
    items = []
    for seq in range(1, 60):
        b = agent_pb2.TelemetryBatch(seq=rng.choice([seq, seq, 2**63, 2**64 - 1]),
                                     dropped_samples=rng.choice(extremes))
        for _ in range(rng.randint(0, 3)):
            b.metrics.add(ts_ms=rng.choice(times), cpu_percent=rng.choice(floats), load1=rng.choice(floats),
                          load5=rng.choice(floats), load15=rng.choice(floats),
                          **{f: rng.choice(extremes) for f in ("mem_total", "mem_used", "swap_total", "swap_used",
                                                              "disk_total", "disk_used", "net_rx_bytes",
                                                              "net_tx_bytes", "uptime_seconds")})
        b.v2ray_users.add(email=rng.choice([fleet.sub["west"], fleet.sub["only-a"], "x" * 5000]),
                          uplink_bytes=rng.choice(extremes), downlink_bytes=rng.choice(extremes))
        b.wireguard_peers.add(peer_id=rng.choice([str(fleet.peer["B"]), str(fleet.peer["A"]), "-1", "1e9"]),
                              rx_bytes=rng.choice(extremes), tx_bytes=rng.choice(extremes),
                              last_handshake_ms=rng.choice(times))
        items.append(fleet.pending("B", b))
    items.append(fleet.pending("A", batch(1, users={fleet.sub["everywhere"]: 100})))
    await ingest._store_or_resync(items)

    assert failed == [] and fleet.acks["A"] == [1] and await fleet.used("everywhere") == 110
    b = await fleet.node("B")
    assert b.telemetry_rejected > 0 and b.telemetry_dropped < 2**63
    async with fleet.sessions() as s:
        sub = await s.get(Subscriber, fleet.sub["west"])
        for bucket in (await s.scalars(select(MetricBucket))).all():
            assert 0 <= bucket.cpu_max <= 100 and bucket.mem_total <= 2**53
    assert sub.used_download_bytes < 2**62
    if "B" in ingest.latest:  # what GET /nodes/{id}/metrics shows: strict JSON, no NaN
        json.dumps(sample_to_dict(ingest.latest["B"]), allow_nan=False)


async def test_metrics_are_clamped_or_refused(fleet: Fleet) -> None:
    ingest = ingest_for(fleet.sessions, "A")
    t = now_ms()
    await ingest._store([
        fleet.pending("A", batch(1, samples=[sample(t - 2000, cpu_percent=250.0, mem_total=1000, mem_used=5000,
                                                    load1=-3.0, disk_total=10, disk_used=11)])),
        fleet.pending("A", batch(2, samples=[sample(t - 1000, cpu_percent=math.nan)])),
        fleet.pending("A", batch(3, samples=[sample(t - 999 + i) for i in range(100)])),  # one is what agents send
    ])
    latest = ingest.latest["A"]
    assert latest.ts_ms == t - 999 + 59
    async with fleet.sessions() as s:
        buckets = (await s.scalars(select(MetricBucket))).all()
    assert sum(b.samples for b in buckets) == 61 and max(b.cpu_max for b in buckets) == 100.0
    first = ingest_for(fleet.sessions, "A")  # (the clamped sample, seen alone)
    await first._store([fleet.pending("A", batch(4, samples=[sample(t + 1, cpu_percent=250.0, mem_used=5000,
                                                                    load1=-3.0)]))])
    clamped = first.latest["A"]
    assert (clamped.cpu_percent, clamped.mem_used, clamped.load1) == (100.0, 1000, 0.0)
    assert (await fleet.node("A")).telemetry_rejected == 1 + 40  # the NaN sample, samples 61..100 of batch 3


async def test_a_delta_beyond_the_link_is_refused(fleet: Fleet) -> None:
    async with fleet.sessions() as s:  # node C: created an hour ago, its link 1 Gbit/s
        s.add(Node(uuid="C", name="C", region="west", provider="local", status="running",
                   created_at=utcnow() - dt.timedelta(hours=1)))
        await s.commit()
    ingest = ingest_for(fleet.sessions, "C", max_link_mbps=1000)
    # 1 Gbit/s both ways for an hour (and a minute of slack) is about 915 GB
    sub = fleet.sub["west"]
    await ingest._store([fleet.pending("C", batch(1, users={sub: 2**62}))])
    await ingest._store([fleet.pending("C", batch(2, users={sub: 10**12}))])
    assert await fleet.used("west") == 0 and (await fleet.node("C")).telemetry_rejected == 2
    await ingest._store([fleet.pending("C", batch(3, users={sub: 500 * 10**9}))])
    assert await fleet.used("west") == 550 * 10**9
    # what the node reported is taken from what its link could carry: the rest of the hour is not enough twice
    await ingest._store([fleet.pending("C", batch(4, users={sub: 500 * 10**9}, samples=[]))])
    c = await fleet.node("C")
    assert await fleet.used("west") == 550 * 10**9 and c.telemetry_rejected == 3 and c.telemetry_seq == 4
    assert fleet.acks["C"] == [1, 2, 3, 4]


async def test_a_long_absence_after_a_controller_start_is_accepted(fleet: Fleet) -> None:
    # Node A exists since LONG_AGO and was away: its agent's spool merged days of traffic into one batch, and
    # this controller has just started. A month at 1 Gbit/s is far more than 50 TB.
    ingest = ingest_for(fleet.sessions, "A", max_link_mbps=1000)
    await ingest._store([fleet.pending("A", batch(1, users={fleet.sub["only-a"]: 50 * 10**12},
                                                  peers={fleet.peer["A"]: 10 * 10**12}))])
    assert await fleet.used("only-a") == 55 * 10**12 and await fleet.peer_bytes("A") == 15 * 10**12
    assert (await fleet.node("A")).telemetry_rejected == 0


async def test_refusals_are_logged_per_node_at_most_once_a_minute_without_ids(fleet: Fleet,
                                                                              caplog: pytest.LogCaptureFixture) -> None:
    ingest = ingest_for(fleet.sessions, "A", "B")
    caplog.set_level(logging.WARNING, logger="vpnfleet.telemetry")
    for seq in (1, 2, 3):
        await ingest._store([fleet.pending("B", batch(seq, users={fleet.sub["only-a"]: 10},
                                                      peers={fleet.peer["A"]: 1}))])
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "node B" in lines[0] and "foreign_peer=1" in lines[0] and "foreign_user=1" in lines[0]
    assert fleet.sub["only-a"] not in lines[0]
    assert (await fleet.node("B")).telemetry_rejected == 6 and ingest.entries_refused == 6


# -- log lines --------------------------------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def line(message: str, **fields) -> agent_pb2.LogLine:
    return agent_pb2.LogLine(ts_ms=fields.pop("ts_ms", now_ms()), level=fields.pop("level", "info"),
                             source=fields.pop("source", "agent"), message=message)


def test_log_lines_are_capped_on_a_character_boundary() -> None:
    store = LogStore(EventBus(), 100, line_max_bytes=8192)
    store.add("n1", [line("é" * 2**19), line("x" * 2**20), line("short"), line("😀" * 2048)])  # 1 MiB, 1 MiB, 8 KiB
    cut, ascii_cut, short, exact = [r.message for r in store.query("n1")]
    for message in (cut, ascii_cut):
        assert len(message.encode()) <= 8192 and "…[truncated " in message
    kept = cut.split(" …")[0]
    assert kept == "é" * len(kept) and len(kept) > 4000  # whole characters only
    assert cut.endswith(f" …[truncated {2**20 - len(kept.encode())} bytes]")
    assert ascii_cut.endswith(f"[truncated {2**20 - len(ascii_cut.split(' …')[0])} bytes]")
    assert short == "short" and exact == "😀" * 2048  # exactly 8 KiB: not cut


def test_log_level_source_and_time_are_bounded() -> None:
    store = LogStore(EventBus(), 100)
    store.add("n1", [line("m", level="W" * 1000, source="s" * 1000, ts_ms=2**62), line("n", ts_ms=-2**63)])
    first, second = store.query("n1")
    assert first.level == "w" * 16 and first.source == "s" * 32
    now = dt.datetime.now(dt.timezone.utc)
    assert abs((first.ts - now).total_seconds()) < 60 and abs((second.ts - now).total_seconds()) < 60


def test_log_rate_limit_drops_and_counts() -> None:
    clock = Clock()
    store = LogStore(EventBus(), 10_000, lines_per_second=5, clock=clock)  # burst: 50 lines
    store.add("n1", [line(f"l{i}") for i in range(80)], dropped=3)
    assert len(store.query("n1", limit=1000)) == 50 and store.agent_dropped["n1"] == 3 + 30
    store.add("n2", [line("other node")])  # a bucket per node
    assert len(store.query("n2")) == 1
    clock.now += 2  # 10 more lines' worth
    store.add("n1", [line(f"m{i}") for i in range(12)])
    assert len(store.query("n1", limit=1000)) == 60 and store.agent_dropped["n1"] == 35
    clock.now += 3600  # refills to the burst, not beyond
    store.add("n1", [line(f"k{i}") for i in range(60)])
    assert len(store.query("n1", limit=1000)) == 110 and store.agent_dropped["n1"] == 45
