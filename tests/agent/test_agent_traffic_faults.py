"""Traffic accounting under faults: a traffic file that cannot be written (full disk), a spool that cannot take
the batch, a spool that evicts again and again, a damaged traffic file. No byte may be lost or counted twice
where the disk still allows it, and nothing of this may stop telemetry or the agent."""

from __future__ import annotations

import asyncio
import errno
import json
import logging

import pytest

from agent.spool import Spool
from agent.telemetry import MetricsLoop
from agent.v2ray import traffic as v2ray_traffic
from agent.v2ray.traffic import UsageMeter
from agent.wireguard import traffic as wg_traffic
from agent.wireguard.model import DeviceState, PeerState
from agent.wireguard.traffic import TrafficMeter
from protos import agent_pb2


class Disk:
    """Stands in for the disk under one module's write_atomic: `full` makes every write fail with ENOSPC."""

    def __init__(self, monkeypatch, module) -> None:
        self.full = False
        real = module.write_atomic

        def write(path, data, mode=0o600):
            if self.full:
                raise OSError(errno.ENOSPC, "No space left on device")
            real(path, data, mode)

        monkeypatch.setattr(module, "write_atomic", write)


class V2RaySource:
    """The V2Ray driver's TrafficSource over a real UsageMeter: each take reads the next counters (zeroed in
    V2Ray from then on). `full_during` names the calls during which traffic.json cannot be written."""

    traffic_field = "v2ray_users"

    def __init__(self, meter: UsageMeter, disk: Disk, reads: list[dict], full_during: dict[int, set[str]]) -> None:
        self.meter, self.disk, self.reads, self.full_during = meter, disk, reads, full_during
        self.round = 0

    def _call(self, name, fn, *args):
        self.disk.full = name in self.full_during.get(self.round, set())
        try:
            return fn(*args)
        finally:
            self.disk.full = False

    async def take_traffic(self, seq):
        self.round += 1
        counters = self.reads.pop(0) if self.reads else {}
        return self._call("take", self.meter.take, seq, counters)

    def give_back(self, entries):
        self._call("give_back", self.meter.give_back, entries)

    def spooled(self, seq):
        self._call("spooled", self.meter.spooled, seq)


class WireGuardSource:
    """The WireGuard driver's TrafficSource over a real TrafficMeter: each take reads the next rx counter of
    peer A on wg0 (cumulative, as the device shows it)."""

    traffic_field = "wireguard_peers"

    def __init__(self, meter: TrafficMeter, rx_readings: list[int]) -> None:
        self.meter, self.readings, self.rx = meter, rx_readings, 0
        meter.reset("wg0")

    async def take_traffic(self, seq):
        self.rx = self.readings.pop(0) if self.readings else self.rx
        entries, _ = self.meter.take({"wg0": (DeviceState(peers={"A": peer(self.rx)}), {"A": "7"})})
        return entries

    def give_back(self, entries):
        self.meter.give_back(entries)

    def spooled(self, seq):
        pass


class FakeSpool:
    """last_seq and append, as MetricsLoop uses them; append fails while `fail` is set."""

    def __init__(self) -> None:
        self.batches: list[agent_pb2.TelemetryBatch] = []
        self.attempts = 0
        self.fail = False
        self.after_attempt = lambda: None

    @property
    def last_seq(self) -> int:
        return len(self.batches)

    def append(self, samples, **extra):
        self.attempts += 1
        self.after_attempt()
        if self.fail:
            raise OSError(errno.ENOSPC, "No space left on device")
        batch = agent_pb2.TelemetryBatch(seq=len(self.batches) + 1, metrics=samples, **extra)
        self.batches.append(batch)
        return batch


class FakeSampler:
    def sample(self):
        return agent_pb2.MetricSample(ts_ms=1)


class FailingSource:
    """A source whose take always fails (and, optionally, whose spooled does too); records what it hears."""

    traffic_field = "v2ray_users"

    def __init__(self, spooled_fails: bool = False) -> None:
        self.spooled_seqs: list[int] = []
        self.spooled_fails = spooled_fails

    async def take_traffic(self, seq):
        raise OSError(errno.ENOSPC, "No space left on device")

    def give_back(self, entries):
        raise AssertionError("nothing was taken")

    def spooled(self, seq):
        self.spooled_seqs.append(seq)
        if self.spooled_fails:
            raise OSError(errno.ENOSPC, "No space left on device")


def peer(rx: int) -> PeerState:
    return PeerState("k", rx_bytes=rx, tx_bytes=0, last_handshake_ms=0)


async def run_rounds(loop: MetricsLoop, spool: FakeSpool, rounds: int) -> None:
    """Run MetricsLoop (interval 0) for exactly `rounds` attempts to spool a batch, then stop it.

    Stopped while it waits for the next round, never in the middle of one (which would drop what was taken).
    """
    spool.attempts = 0

    def after_attempt() -> None:
        if spool.attempts >= rounds:
            loop.interval_seconds = 3600  # read by the loop after this round: it then just waits

    spool.after_attempt = after_attempt
    loop.interval_seconds = 0
    task = asyncio.create_task(loop.run())
    for _ in range(300):
        await asyncio.sleep(0.01)
        if spool.attempts >= rounds or task.done():
            break
    await asyncio.sleep(0.05)  # let the round finish (give back or settle)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def downlink(spool: FakeSpool, email: str = "alice") -> int:
    return sum(u.downlink_bytes for b in spool.batches for u in b.v2ray_users if u.email == email)


def peer_rx(spool: FakeSpool) -> int:
    return sum(p.rx_bytes for b in spool.batches for p in b.wireguard_peers)


# -- 1. traffic.json cannot be written, the spool can -----------------------------------------------------


def test_meter_take_that_cannot_be_recorded_keeps_the_bytes(tmp_path, monkeypatch):
    path = tmp_path / "traffic.json"
    meter = UsageMeter(path)
    meter.keep({"alice": (1, 10)})
    on_disk = path.read_text()
    disk = Disk(monkeypatch, v2ray_traffic)
    disk.full = True
    with pytest.raises(OSError):
        meter.take(1, {"alice": (2, 20), "bob": (0, 5)})
    assert meter.carried() == {"alice": (3, 30), "bob": (0, 5)}  # counters already zeroed in V2Ray: kept
    assert path.read_text() == on_disk
    meter.spooled(1)  # batch 1 went out without them: that settles nothing
    disk.full = False
    taken = meter.take(2, {})
    assert {e.email: (e.uplink_bytes, e.downlink_bytes) for e in taken} == {"alice": (3, 30), "bob": (0, 5)}
    meter.spooled(2)
    assert meter.carried() == {} and UsageMeter(path).carried() == {}


async def test_metrics_loop_loses_no_usage_when_traffic_json_cannot_be_written(tmp_path, monkeypatch):
    disk = Disk(monkeypatch, v2ray_traffic)
    reads = [{"alice": (100, 1000)}] * 3
    source = V2RaySource(UsageMeter(tmp_path / "traffic.json"), disk, reads, full_during={2: {"take"}})
    spool = FakeSpool()
    await run_rounds(MetricsLoop(FakeSampler(), spool, 0, traffic_sources=[source]), spool, 3)
    assert not spool.batches[1].v2ray_users  # round 2 spooled without V2Ray's entries...
    assert downlink(spool) == 3000  # ...which went out with round 3, once
    assert source.meter.carried() == {}


async def test_metrics_loop_settles_only_sources_whose_take_succeeded():
    spool = FakeSpool()
    broken = FailingSource()
    await run_rounds(MetricsLoop(FakeSampler(), spool, 0, traffic_sources=[broken]), spool, 3)
    assert len(spool.batches) >= 3
    assert broken.spooled_seqs == [0]  # only the start-up call: none of the batches holds its entries


async def test_a_source_that_cannot_settle_at_start_does_not_end_telemetry():
    spool = FakeSpool()
    broken = FailingSource(spooled_fails=True)
    await run_rounds(MetricsLoop(FakeSampler(), spool, 0, traffic_sources=[broken]), spool, 2)
    assert broken.spooled_seqs == [0] and len(spool.batches) >= 2


def test_wireguard_take_that_cannot_save_its_baselines_keeps_the_deltas(tmp_path, monkeypatch):
    path = tmp_path / "t.json"
    meter = TrafficMeter(path)
    meter.reset("wg0")
    disk = Disk(monkeypatch, wg_traffic)
    disk.full = True
    with pytest.raises(OSError):
        meter.take({"wg0": (DeviceState(peers={"A": peer(100)}), {"A": "7"})})
    disk.full = False
    entries, _ = meter.take({"wg0": (DeviceState(peers={"A": peer(150)}), {"A": "7"})})
    assert [(e.public_key, e.rx_bytes, e.peer_id) for e in entries] == [("A", 150, "7")]  # 100 + 50, once
    entries, _ = TrafficMeter(path).take({"wg0": (DeviceState(peers={"A": peer(150)}), {"A": "7"})})
    assert entries == []


def test_wireguard_give_back_that_cannot_be_saved_keeps_the_entries(tmp_path, monkeypatch):
    meter = TrafficMeter(tmp_path / "t.json")
    meter.reset("wg0")
    entries, _ = meter.take({"wg0": (DeviceState(peers={"A": peer(100)}), {"A": "7"})})
    disk = Disk(monkeypatch, wg_traffic)
    disk.full = True
    for _ in range(3):  # repeated failures: carried merged, not piled up
        with pytest.raises(OSError):
            meter.give_back(entries)
    disk.full = False
    again, _ = meter.take({"wg0": (DeviceState(peers={"A": peer(100)}), {"A": "7"})})
    assert [(e.public_key, e.rx_bytes) for e in again] == [("A", 300)]


# -- 2. the spool fails and one give_back fails too ------------------------------------------------------


async def test_a_failing_give_back_costs_no_other_source_its_traffic(tmp_path, monkeypatch):
    disk = Disk(monkeypatch, v2ray_traffic)
    v2ray = V2RaySource(UsageMeter(tmp_path / "traffic.json"), disk, [{"alice": (1, 1000)}],
                        full_during={1: {"give_back"}})
    wireguard = WireGuardSource(TrafficMeter(tmp_path / "wg.json"), [500])
    spool = FakeSpool()
    spool.fail = True
    loop = MetricsLoop(FakeSampler(), spool, 0, traffic_sources=[v2ray, wireguard])
    await run_rounds(loop, spool, 1)
    assert v2ray.meter.carried() == {"alice": (1, 1000)}  # its file could not be written: kept in memory
    spool.fail = False
    await run_rounds(loop, spool, 2)
    assert downlink(spool) == 1000 and peer_rx(spool) == 500  # both delivered, once


# -- 3. a full spool evicting again and again ------------------------------------------------------------


def test_repeated_evictions_merge_the_carried_traffic(tmp_path):
    spool = Spool(tmp_path, max_batches=2)
    for n in range(50):
        spool.append(
            [agent_pb2.MetricSample(ts_ms=n)],
            v2ray_users=[agent_pb2.UserTraffic(email="alice", uplink_bytes=1, downlink_bytes=10),
                         agent_pb2.UserTraffic(email=f"user-{n % 3}", downlink_bytes=1)],
            wireguard_peers=[agent_pb2.PeerTraffic(interface="wg0", public_key="A", peer_id="7", rx_bytes=2,
                                                   last_handshake_ms=n),
                             agent_pb2.PeerTraffic(interface="wg0", public_key="A", peer_id="8", rx_bytes=3)],
        )
    batches = spool.pending()
    assert [b.seq for b in batches] == [49, 50] and batches[-1].dropped_samples == 1
    # Each eviction carries the oldest batch into the newest: bounded by the distinct users and peers, however
    # many evictions a batch has carried.
    assert all(len(b.v2ray_users) <= 4 and len(b.wireguard_peers) <= 2 for b in batches)
    users = [u for b in batches for u in b.v2ray_users]
    assert sum(u.downlink_bytes for u in users if u.email == "alice") == 500  # nothing lost, nothing twice
    assert sum(u.uplink_bytes for u in users) == 50 and sum(u.downlink_bytes for u in users) == 550
    peers = [p for b in batches for p in b.wireguard_peers]
    assert sum(p.rx_bytes for p in peers if p.peer_id == "7") == 100  # one key, two peer ids: kept apart
    assert sum(p.rx_bytes for p in peers if p.peer_id == "8") == 150
    newest = {p.peer_id: p for p in batches[-1].wireguard_peers}
    assert newest["7"].last_handshake_ms == 49  # the latest of the batches it carries, not their sum


# -- 4. a damaged traffic file ---------------------------------------------------------------------------


@pytest.mark.parametrize("content", [
    [],
    "carry",
    {"carry": [1]},
    {"carry": {"secret-subscriber": 5}},
    {"carry": {"secret-subscriber": [1]}},
    {"carry": {"secret-subscriber": [1, -2]}},
    {"carry": {"secret-subscriber": [1, "2"]}},
    {"pending": {"seq": 1}},
    {"pending": {"seq": "x", "entries": {}}},
    {"pending": {"seq": 1, "entries": {"secret-subscriber": None}}},
])
def test_a_damaged_usage_file_starts_empty(tmp_path, caplog, content):
    path = tmp_path / "traffic.json"
    path.write_text(json.dumps(content))
    with caplog.at_level(logging.ERROR):
        meter = UsageMeter(path)
    assert meter.carried() == {}
    assert "damaged" in caplog.text and "secret-subscriber" not in caplog.text
    assert [e.email for e in meter.take(1, {"alice": (1, 1)})] == ["alice"]  # and it works from there


@pytest.mark.parametrize("content", [
    [1],
    {"baseline": [1]},
    {"baseline": {"wg0": [1]}},
    {"baseline": {"wg0": {"A": [1, 2]}}},
    {"baseline": {"wg0": {"A": [1, 2, "3"]}}},
    {"carry": [5]},
    {"carry": [{"interface": "wg0", "public_key": "A", "rx_bytes": -1}]},
    {"carry": [{"interface": "wg0", "public_key": "A", "rx_bytes": "many"}]},
])
def test_a_damaged_wireguard_traffic_file_starts_empty(tmp_path, caplog, content):
    path = tmp_path / "t.json"
    path.write_text(json.dumps(content))
    with caplog.at_level(logging.ERROR):
        meter = TrafficMeter(path)
    assert "damaged" in caplog.text
    meter.adopt("wg0", DeviceState(peers={"A": peer(100)}))  # as at start-up: count from what it shows now
    entries, _ = meter.take({"wg0": (DeviceState(peers={"A": peer(130)}), {"A": "7"})})
    assert [(e.public_key, e.rx_bytes) for e in entries] == [("A", 30)]

