import asyncio
import collections

from agent.spool import Spool
from agent.telemetry import MetricsLoop, Sampler, counter_delta, cpu_busy_percent, net_deltas

Times = collections.namedtuple("Times", "user nice system idle iowait irq softirq steal guest guest_nice")


def test_counter_delta_tolerates_resets():
    assert counter_delta(100, 150) == 50
    assert counter_delta(100, 30) == 30  # counter restarted from zero


def test_net_deltas_sums_interfaces_and_skips_new_ones():
    previous = {"eth0": (1000, 500), "wg0": (10, 10)}
    current = {"eth0": (1600, 700), "wg0": (5, 20), "eth1": (9999, 9999)}
    assert net_deltas(previous, current) == (600 + 5, 200 + 10)
    assert net_deltas({}, current) == (0, 0)


def test_cpu_busy_percent():
    before = Times(100, 0, 50, 800, 50, 0, 0, 0, 0, 0)
    after = Times(150, 0, 75, 850, 50, 0, 0, 0, 20, 0)  # guest is inside user already
    assert cpu_busy_percent(before, after) == 60.0
    assert cpu_busy_percent(before, before) == 0.0


def test_sampler_gives_a_sane_sample():
    sample = Sampler().sample()
    assert sample.ts_ms > 0
    assert 0.0 <= sample.cpu_percent <= 100.0
    assert 0 < sample.mem_used <= sample.mem_total
    assert sample.swap_used <= sample.swap_total
    assert 0 < sample.disk_used <= sample.disk_total
    assert sample.load1 >= 0 and sample.uptime_seconds > 0


async def test_metrics_loop_spools_one_batch_per_sample(tmp_path):
    spool = Spool(tmp_path, max_batches=100)
    seen: list[int] = []
    loop = MetricsLoop(Sampler(), spool, interval_seconds=3600, on_batch=lambda b: seen.append(b.seq))
    task = asyncio.create_task(loop.run())
    try:
        await asyncio.sleep(0.2)
        assert seen == []  # an hour is long
        loop.set_interval(0.05)  # takes effect at once, not after the hour
        for _ in range(100):
            if len(seen) >= 3:
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert seen[:3] == [1, 2, 3]
    assert [len(b.metrics) for b in spool.pending()][:3] == [1, 1, 1]
