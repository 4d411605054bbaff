"""Exactly-once telemetry ingestion and the rollup history, on a real SQLite file."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select

from controller.db import make_engine, make_sessionmaker, prepare_database
from controller.models import MetricBucket, Node
from controller.services.telemetry import TelemetryIngest, _Pending, metrics_history
from controller.errors import ValidationFailed
from protos import agent_pb2

T0 = int(dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc).timestamp() * 1000)
#: the test nodes exist since before T0: samples stamped before a node was created are refused
CREATED = dt.datetime(2025, 12, 1, tzinfo=dt.timezone.utc)


def batch(seq: int, ts_ms: int, cpu: float = 10.0, rx: int = 100) -> agent_pb2.TelemetryBatch:
    return agent_pb2.TelemetryBatch(seq=seq, metrics=[agent_pb2.MetricSample(
        ts_ms=ts_ms, cpu_percent=cpu, mem_total=1000, mem_used=500, net_rx_bytes=rx, net_tx_bytes=rx // 2)])


def connected(ingest: TelemetryIngest, epoch: int = 1) -> TelemetryIngest:
    """As the hub does when node n1's stream (session epoch 1) opens on a fresh database."""
    ingest.begin_session("n1", epoch, 0)
    return ingest


@pytest.fixture
async def db(tmp_path: Path):
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 't.db'}")
    await prepare_database(engine)
    sessions = make_sessionmaker(engine)
    async with sessions() as s:
        s.add(Node(uuid="n1", name="n1", region="local", provider="local", status="running", created_at=CREATED))
        await s.commit()
    yield sessions
    await engine.dispose()


async def test_duplicates_are_acknowledged_but_stored_once(db) -> None:
    ingest = connected(TelemetryIngest(db))
    runner = asyncio.create_task(ingest.run())
    acks: list[int] = []
    try:
        for seq in (1, 2, 2, 1, 3):  # a reconnect re-sends 1 and 2
            await ingest.submit("n1", 1, batch(seq, T0 + seq * 10_000, cpu=seq * 10), acks.append)
        for _ in range(100):
            if len(acks) == 5:
                break
            await asyncio.sleep(0.02)
    finally:
        runner.cancel()
    assert len(acks) == 5 and max(acks) == 3
    assert ingest.duplicates_ignored == 2
    async with db() as s:
        node = await s.scalar(select(Node).where(Node.uuid == "n1"))
        bucket = await s.scalar(select(MetricBucket))
    assert node.telemetry_seq == 3
    assert bucket.samples == 3 and bucket.cpu_max == 30 and bucket.net_rx == 300
    assert ingest.latest["n1"].cpu_percent == 30


async def test_history_merges_buckets_by_interval(db) -> None:
    ingest = connected(TelemetryIngest(db))
    acks: list[int] = []
    # 6 minutes, one sample per minute, cpu 10..60
    await ingest._store([_Pending("n1", 1, batch(i + 1, T0 + i * 60_000, cpu=(i + 1) * 10), acks.append) for i in range(6)])
    start = dt.datetime.fromtimestamp(T0 / 1000, dt.timezone.utc)
    async with db() as s:
        per_minute = await metrics_history(s, "n1", start, start + dt.timedelta(minutes=6), 60)
        per_3min = await metrics_history(s, "n1", start, start + dt.timedelta(minutes=6), 180)
        with pytest.raises(ValidationFailed):
            await metrics_history(s, "n1", start, start + dt.timedelta(days=30), 60)
        with pytest.raises(ValidationFailed):
            await metrics_history(s, "n1", start, start, 60)
    assert [p["cpu_avg"] for p in per_minute] == [10, 20, 30, 40, 50, 60]
    assert [(p["cpu_avg"], p["cpu_max"], p["samples"], p["net_rx_bytes"]) for p in per_3min] == [
        (20, 30, 3, 300), (50, 60, 3, 300)]


async def test_wireguard_peer_usage_is_counted_once_per_batch(db) -> None:
    from controller.models import WireguardClient, WireguardServer, WireguardUsage

    async with db() as s:
        server = WireguardServer(node_uuid="n1", name="wg0", interface="wg0", listen_port=51820,
                                 ipv4_address="10.8.0.1/24", private_key="k", public_key="p")
        s.add(server)
        await s.flush()
        client = WireguardClient(server_id=server.id, name="c", public_key="pk", ipv4_address="10.8.0.2/32")
        s.add(client)
        await s.commit()
    ingest = connected(TelemetryIngest(db))
    acks: list[int] = []

    def traffic_batch(seq: int, rx: int) -> agent_pb2.TelemetryBatch:
        b = batch(seq, T0 + seq * 10_000)
        b.wireguard_peers.add(interface="wg0", public_key="pk", peer_id=str(client.id), rx_bytes=rx, tx_bytes=2 * rx,
                              last_handshake_ms=T0 + seq)
        b.wireguard_peers.add(interface="wg0", public_key="gone", peer_id="999", rx_bytes=5)  # deleted peer
        return b

    items = [_Pending("n1", 1, traffic_batch(seq, rx), acks.append)
             for seq, rx in ((1, 1000), (2, 500), (2, 500), (1, 1000))]  # re-sends after a reconnect
    await ingest._store(items[:2])
    await ingest._store(items[2:])
    async with db() as s:
        row = await s.get(WireguardClient, client.id)
        usage = (await s.scalars(select(WireguardUsage))).all()
    assert (row.bytes_received, row.bytes_sent) == (1500, 3000)
    assert [(u.rx_bytes, u.tx_bytes) for u in usage] == [(1500, 3000)]
    assert row.last_handshake_at is not None and acks == [2, 2, 2, 2]


async def test_v2ray_user_usage_is_counted_once_per_batch(db) -> None:
    from controller.models import Subscriber, SubscriberUsage

    async with db() as s:
        sub = Subscriber(username="alice", credential_uuid="c", credential_secret="x", short_uuid="s" * 22, status="active",
                         expires_at=dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc), used_upload_bytes=0,
                         used_download_bytes=0)
        s.add(sub)
        await s.commit()
    ingest = connected(TelemetryIngest(db))
    acks: list[int] = []
    notified: list[bool] = []
    ingest.on_subscriber_usage = lambda: notified.append(True)

    def traffic_batch(seq: int, down: int) -> agent_pb2.TelemetryBatch:
        b = batch(seq, T0 + seq * 10_000)
        b.v2ray_users.add(email=sub.id, uplink_bytes=down // 10, downlink_bytes=down)
        b.v2ray_users.add(email="vpnfleet-relay", downlink_bytes=7)  # not a subscriber: ignored
        return b

    items = [_Pending("n1", 1, traffic_batch(seq, down), acks.append)
             for seq, down in ((1, 1000), (2, 5000), (2, 5000), (1, 1000))]  # re-sends after a reconnect
    await ingest._store(items[:2])
    await ingest._store(items[2:])
    async with db() as s:
        row = await s.get(Subscriber, sub.id)
        usage = (await s.scalars(select(SubscriberUsage))).all()
    assert (row.used_upload_bytes, row.used_download_bytes) == (600, 6000)
    assert [(u.node_uuid, u.upload_bytes, u.download_bytes) for u in usage] == [("n1", 600, 6000)]
    assert usage[0].hour_start == dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
    assert acks == [2, 2, 2, 2] and notified == [True]  # only the store that had new usage


async def wait_acks(acks: list[int], n: int) -> None:
    for _ in range(200):
        if len(acks) >= n:
            return
        await asyncio.sleep(0.01)


async def stored_seq_and_samples(db) -> tuple[int, int]:
    async with db() as s:
        node = await s.scalar(select(Node).where(Node.uuid == "n1"))
        samples = sum((await s.scalars(select(MetricBucket.samples))).all())
    return node.telemetry_seq, samples


async def test_a_new_stream_never_moves_the_stored_seq_back(db) -> None:
    ingest = connected(TelemetryIngest(db))
    acks: list[int] = []
    await ingest._store([_Pending("n1", 1, batch(1, T0), acks.append)])
    # The agent reconnects; the hub read the node row (seq 0) just before batch 1 was stored.
    assert ingest.begin_session("n1", 2, 0) == 1
    await ingest._store([_Pending("n1", 2, batch(1, T0), acks.append)])  # the re-send
    assert await stored_seq_and_samples(db) == (1, 1) and ingest.duplicates_ignored == 1


async def test_batches_of_a_replaced_stream_are_neither_stored_nor_acknowledged(db) -> None:
    ingest = connected(TelemetryIngest(db))
    old_acks: list[int] = []
    ingest.begin_session("n1", 2, 0)
    await ingest._store([_Pending("n1", 1, batch(1, T0), old_acks.append)])  # still queued from epoch 1
    assert old_acks == [] and await stored_seq_and_samples(db) == (0, 0)  # the new stream re-sends it


async def test_a_write_whose_commit_landed_but_raised_is_retried_without_counting_twice(db, monkeypatch) -> None:
    monkeypatch.setattr("controller.services.telemetry.STORE_RETRY_PAUSES", (0.01, 0.01, 0.01))
    ingest = connected(TelemetryIngest(db))
    failed: list[set[str]] = []
    ingest.on_store_failed = failed.append
    real_store = ingest._store

    async def committed_then_raised(items):
        ingest._store = real_store
        await real_store([_Pending(i.node_uuid, i.epoch, i.batch, lambda seq: None) for i in items])  # no ack
        ingest.stored_seq["n1"] = 0  # as if the commit's answer never came back
        raise ConnectionError("connection lost after COMMIT")

    ingest._store = committed_then_raised
    acks: list[int] = []
    await ingest._store_or_resync([_Pending("n1", 1, batch(1, T0), acks.append)])
    assert acks == [1] and failed == []  # the retry read seq 1 back: a duplicate, acknowledged, not stored again
    assert await stored_seq_and_samples(db) == (1, 1) and ingest.duplicates_ignored == 1


async def test_a_batch_that_cannot_be_stored_holds_back_only_its_own_node(db, monkeypatch) -> None:
    monkeypatch.setattr("controller.services.telemetry.STORE_RETRY_PAUSES", (0.01, 0.01, 0.01))
    from controller.models import WireguardClient, WireguardServer

    async with db() as s:
        s.add(Node(uuid="n2", name="n2", region="local", provider="local", status="running", created_at=CREATED))
        server = WireguardServer(node_uuid="n2", name="wg0", interface="wg0", listen_port=51820,
                                 ipv4_address="10.8.0.1/24", private_key="k", public_key="p")
        s.add(server)
        await s.flush()
        peer = WireguardClient(server_id=server.id, name="c", public_key="pk", ipv4_address="10.8.0.2/32")
        s.add(peer)
        await s.commit()
    ingest = connected(TelemetryIngest(db))
    ingest.begin_session("n2", 1, 0)
    failed: list[set[str]] = []
    ingest.on_store_failed = failed.append
    real_peers = ingest._store_peer_usage

    async def refuses_n2(s, peers):  # stands in for a batch the database refuses (say, a value out of range)
        if peer.id in peers:
            raise ValueError("value out of range")
        await real_peers(s, peers)

    ingest._store_peer_usage = refuses_n2
    poison = batch(1, T0)
    poison.wireguard_peers.add(interface="wg0", public_key="pk", peer_id=str(peer.id), rx_bytes=1)
    acks: dict[str, list[int]] = {"n1": [], "n2": []}
    await ingest._store_or_resync([_Pending("n1", 1, batch(1, T0), acks["n1"].append),
                                   _Pending("n2", 1, poison, acks["n2"].append)])
    assert acks == {"n1": [1], "n2": []} and failed == [{"n2"}]
    assert await stored_seq_and_samples(db) == (1, 1)
    # n2's stream is closed; until it reconnects nothing more of it is stored or acknowledged
    await ingest._store_or_resync([_Pending("n2", 1, batch(2, T0 + 10_000), acks["n2"].append)])
    assert acks["n2"] == [] and failed == [{"n2"}]
    ingest.begin_session("n2", 2, 0)  # the agent reconnects (and its next batches are fine)
    await ingest._store_or_resync([_Pending("n2", 2, batch(1, T0), acks["n2"].append)])
    assert acks["n2"] == [1]


async def test_the_newest_sample_is_published_with_its_traffic_per_second(db) -> None:
    """What the fleet overview shows live: a sample's bytes are since the sample before it, so its rate needs
    two samples; the first is published with no rate rather than a made-up one."""
    ingest = connected(TelemetryIngest(db))
    published: list[dict] = []
    ingest.on_latest = published.append
    runner = asyncio.create_task(ingest.run())
    acks: list[int] = []
    try:
        await ingest.submit("n1", 1, batch(1, T0, cpu=12.5, rx=100), acks.append)
        for _ in range(100):
            if acks:
                break
            await asyncio.sleep(0.02)
        await ingest.submit("n1", 1, batch(2, T0 + 10_000, rx=5000), acks.append)
        for _ in range(100):
            if len(acks) == 2:
                break
            await asyncio.sleep(0.02)
    finally:
        runner.cancel()
    assert [list(p) for p in published] == [["n1"], ["n1"]]
    first, second = published[0]["n1"], published[1]["n1"]
    assert first["cpu_percent"] == 12.5 and first["memory_percent"] == 50.0
    assert first["rx_bytes_per_second"] is None and first["tx_bytes_per_second"] is None
    assert second["rx_bytes_per_second"] == 500.0 and second["tx_bytes_per_second"] == 250.0
    assert ingest.now["n1"] == second
    ingest.forget("n1")
    assert "n1" not in ingest.now
