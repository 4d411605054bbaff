"""Machine metrics with psutil, turned into MetricSample and spooled at the configured interval.

Traffic sources (data-plane drivers: WireGuard peers, V2Ray users) add their per-period deltas to the same
batch, so they are spooled, sent and acknowledged exactly like the samples.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Mapping, NamedTuple, Protocol, Sequence

import psutil

from agent.spool import Spool
from protos import agent_pb2

log = logging.getLogger(__name__)

Counters = Mapping[str, tuple[int, int]]


def counter_delta(previous: int, current: int) -> int:
    """Growth of a monotonic counter; after a reset (interface re-created, wrap) count from zero."""
    return current - previous if current >= previous else current


def net_deltas(previous: Counters, current: Counters) -> tuple[int, int]:
    """Bytes received/sent since the previous reading, summed over interfaces.

    An interface seen for the first time contributes nothing: its counter holds traffic from before
    the previous sample, which is not "since the previous sample".
    """
    rx = tx = 0
    for name, (cur_rx, cur_tx) in current.items():
        if name not in previous:
            continue
        prev_rx, prev_tx = previous[name]
        rx += counter_delta(prev_rx, cur_rx)
        tx += counter_delta(prev_tx, cur_tx)
    return rx, tx


def cpu_busy_percent(previous: NamedTuple, current: NamedTuple) -> float:
    """CPU use between two psutil.cpu_times() readings (named tuples of seconds), 0..100.

    Computed here rather than with psutil.cpu_percent(), whose baseline is kept per calling thread and
    so is meaningless when sampling runs on whichever worker thread asyncio.to_thread picks.
    """
    fields = previous._fields
    # On Linux guest time is already included in user time.
    counted = [f for f in fields if f not in ("guest", "guest_nice")]
    total = sum(getattr(current, f) - getattr(previous, f) for f in counted)
    idle = sum(getattr(current, f) - getattr(previous, f) for f in ("idle", "iowait") if f in fields)
    if total <= 0:
        return 0.0
    return round(max(0.0, min(100.0, (total - idle) / total * 100.0)), 1)


def non_loopback_net_counters() -> dict[str, tuple[int, int]]:
    """Cumulative (rx, tx) bytes per interface, loopback excluded."""
    stats = psutil.net_if_stats()
    counters = {}
    for name, io in psutil.net_io_counters(pernic=True).items():
        flags = getattr(stats.get(name), "flags", "")
        if name == "lo" or "loopback" in flags.split(","):
            continue
        counters[name] = (io.bytes_recv, io.bytes_sent)
    return counters


class Sampler:
    """Takes MetricSamples; remembers the previous reading for CPU and network deltas."""

    def __init__(self, disk_path: str = "/") -> None:
        self.disk_path = disk_path
        self._cpu = psutil.cpu_times()
        self._net = non_loopback_net_counters()

    def sample(self) -> agent_pb2.MetricSample:
        cpu = psutil.cpu_times()
        net = non_loopback_net_counters()
        rx, tx = net_deltas(self._net, net)
        cpu_percent = cpu_busy_percent(self._cpu, cpu)
        self._cpu, self._net = cpu, net
        mem = psutil.virtual_memory()
        swap = psutil.swap_memory()
        disk = psutil.disk_usage(self.disk_path)
        load1, load5, load15 = psutil.getloadavg()
        return agent_pb2.MetricSample(
            ts_ms=int(time.time() * 1000),
            cpu_percent=cpu_percent,
            mem_total=mem.total,
            mem_used=mem.used,
            swap_total=swap.total,
            swap_used=swap.used,
            disk_total=disk.total,
            disk_used=disk.used,
            net_rx_bytes=rx,
            net_tx_bytes=tx,
            load1=load1,
            load5=load5,
            load15=load15,
            uptime_seconds=max(0, int(time.time() - psutil.boot_time())),
        )


class TrafficSource(Protocol):
    """Something that counts transfer per period (WireGuard peers, V2Ray users) for the telemetry batches.

    take_traffic(seq) hands over what moved since the previous take, for the batch numbered `seq`, and
    forgets it; if that batch cannot be spooled, give_back() returns the entries so they go out with the next
    batch (never lost, never twice). spooled(seq) says the batch `seq` is safely on disk: a source that keeps
    taken entries on disk until then (to survive an agent crash between taking and spooling) drops them.
    A take that raises must keep what it would have handed over (it is re-offered by the next take); such a
    source is neither given back nor told spooled() for that batch. A give_back that raises keeps the
    entries in memory all the same.
    """

    #: The TelemetryBatch field the entries go in, e.g. "wireguard_peers" or "v2ray_users".
    traffic_field: str

    async def take_traffic(self, seq: int) -> list[Any]: ...

    def give_back(self, entries: list[Any]) -> None: ...

    def spooled(self, seq: int) -> None: ...


#: What one round took: (source, entries) for every source whose take succeeded.
Taken = list[tuple[TrafficSource, list[Any]]]


class MetricsLoop:
    """Every `interval` seconds: one sample, spooled as one batch. The interval can change at run time.

    The batch also carries whatever the traffic sources took since the previous one; without sources (or
    with nothing to report) the batch is exactly the one sample.
    """

    def __init__(
        self,
        sampler: Sampler,
        spool: Spool,
        interval_seconds: int,
        on_batch: Callable[[agent_pb2.TelemetryBatch], None] = lambda batch: None,
        traffic_sources: Sequence[TrafficSource] = (),
    ) -> None:
        self.sampler = sampler
        self.spool = spool
        self.interval_seconds = interval_seconds
        self.on_batch = on_batch
        self.traffic_sources: list[TrafficSource] = list(traffic_sources)
        self._wake = asyncio.Event()

    def add_traffic_source(self, source: TrafficSource) -> None:
        self.traffic_sources.append(source)

    def set_interval(self, seconds: int) -> None:
        """Takes effect at once: the current wait is cut short and restarted with the new interval."""
        if seconds != self.interval_seconds:
            self.interval_seconds = seconds
            self._wake.set()

    async def run(self) -> None:
        # Tell sources what reached the disk before a crash or restart: entries they kept for a batch that
        # made it into the spool are delivered; the rest ride with the next batch. Guarded like every round:
        # a source that cannot write its file (full disk) must not end telemetry before it starts.
        self._settle([(source, []) for source in self.traffic_sources], self.spool.last_seq)
        while True:
            try:
                await self._wait(self.interval_seconds)
                # psutil reads /proc and the spool fsyncs: both off the event loop.
                sample = await asyncio.to_thread(self.sampler.sample)
                seq = self.spool.last_seq + 1  # this loop is the spool's only writer
                taken = await self._take_traffic(seq)
                try:
                    batch = await asyncio.to_thread(self._append, sample, taken)
                except Exception:
                    self._give_back(taken)
                    raise
                self._settle(taken, batch.seq)
                self.on_batch(batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A full disk or an odd /proc must not end telemetry for good; try again next interval.
                log.exception("taking a metrics sample failed")

    async def _take_traffic(self, seq: int) -> Taken:
        """Every source whose take succeeded, with its entries (possibly none) for batch seq."""
        taken = []
        for source in self.traffic_sources:
            try:
                entries = await source.take_traffic(seq)
            except asyncio.CancelledError:
                raise
            except Exception:  # one broken source must not cost the sample
                log.exception("reading traffic from %s failed", type(source).__name__)
                continue
            taken.append((source, entries))
        return taken

    def _append(self, sample: agent_pb2.MetricSample, taken: Taken) -> agent_pb2.TelemetryBatch:
        traffic: dict[str, list[Any]] = {}
        for source, entries in taken:
            if entries:
                traffic.setdefault(source.traffic_field, []).extend(entries)
        return self.spool.append([sample], **traffic)

    @staticmethod
    def _give_back(taken: Taken) -> None:
        """The batch was not spooled: each source gets its entries back. One that fails (say, it cannot write
        its own file) keeps them in memory and must not cost the others theirs."""
        for source, entries in taken:
            if not entries:
                continue
            try:
                source.give_back(entries)
            except Exception:
                log.exception("giving traffic back to %s failed", type(source).__name__)

    @staticmethod
    def _settle(taken: Taken, seq: int) -> None:
        """Batch seq is on disk: tell the sources that took for it. One whose take failed is left alone; its
        entries are not in the batch, so nothing of it may count as delivered."""
        for source, _ in taken:
            try:
                source.spooled(seq)
            except Exception:  # the batch is spooled all the same: the others and on_batch must still hear it
                log.exception("settling traffic of %s failed", type(source).__name__)

    async def _wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return
            # Interval changed: measure the new interval from now, so a shortened one acts promptly.
            deadline = time.monotonic() + self.interval_seconds
