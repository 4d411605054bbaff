import os
import stat

import pytest

from agent import spool as spool_module
from agent.spool import Spool, batch_file_name
from protos import agent_pb2


def sample(n: int = 0) -> agent_pb2.MetricSample:
    return agent_pb2.MetricSample(ts_ms=1000 + n, cpu_percent=float(n))


def seqs(spool: Spool) -> list[int]:
    return [b.seq for b in spool.pending()]


def test_sequence_starts_at_one_and_pending_is_oldest_first(tmp_path):
    spool = Spool(tmp_path, max_batches=10)
    assert spool.last_seq == 0
    for i in range(3):
        batch = spool.append([sample(i)])
        assert batch.seq == i + 1
    assert seqs(spool) == [1, 2, 3]
    assert [b.metrics[0].ts_ms for b in spool.pending()] == [1000, 1001, 1002]
    assert spool.last_seq == 3
    assert [b.seq for b in spool.pending_after(1)] == [2, 3]
    assert [b.seq for b in spool.pending_after(0, limit=2)] == [1, 2]
    mode = stat.S_IMODE(os.stat(tmp_path / batch_file_name(1)).st_mode)
    assert mode == 0o600


def test_ack_deletes_everything_up_to_the_acked_seq(tmp_path):
    spool = Spool(tmp_path, max_batches=10)
    for i in range(5):
        spool.append([sample(i)])
    assert spool.ack(3) == 3
    assert seqs(spool) == [4, 5]
    assert not (tmp_path / batch_file_name(2)).exists()
    assert spool.ack(3) == 0  # duplicate ack is harmless
    assert spool.ack(100) == 2
    assert seqs(spool) == []
    assert spool.append([sample()]).seq == 6  # acked seqs are never reused


def test_restart_keeps_pending_batches_and_the_sequence(tmp_path):
    spool = Spool(tmp_path, max_batches=10)
    for i in range(4):
        spool.append([sample(i)])
    spool.ack(2)
    reopened = Spool(tmp_path, max_batches=10)
    assert seqs(reopened) == [3, 4]
    assert reopened.last_seq == 4
    assert reopened.append([sample()]).seq == 5

    reopened.ack(5)
    again = Spool(tmp_path, max_batches=10)
    assert seqs(again) == []
    assert again.append([sample()]).seq == 6  # empty spool: the persisted counter still wins


def test_files_win_over_a_stale_meta_file(tmp_path):
    spool = Spool(tmp_path, max_batches=10)
    for i in range(3):
        spool.append([sample(i)])
    (tmp_path / "meta.json").write_text('{"next_seq": 1}')  # as if a crash lost it
    assert Spool(tmp_path, max_batches=10).append([sample()]).seq == 4


def test_bound_drops_the_oldest_and_counts_the_dropped_samples(tmp_path):
    spool = Spool(tmp_path, max_batches=3)
    spool.append([sample(1), sample(2)])  # seq 1, two samples
    spool.append([sample(3)])  # seq 2
    spool.append([sample(4)])  # seq 3
    batch4 = spool.append([sample(5)])  # full: seq 1 (2 samples) goes
    assert seqs(spool) == [2, 3, 4]
    assert batch4.dropped_samples == 2
    batch5 = spool.append([sample(6)])  # seq 2 (1 sample) goes
    assert batch5.dropped_samples == 1
    assert seqs(spool) == [3, 4, 5]
    assert len(spool) == 3
    assert spool.append([sample(7)]).dropped_samples == 1
    assert len(list(tmp_path.glob("*.pb"))) == 3


def test_dropped_count_is_stored_with_the_batch_that_carries_it(tmp_path):
    spool = Spool(tmp_path, max_batches=1)
    spool.append([sample(1), sample(2), sample(3)])
    spool.append([sample(4)])
    reopened = Spool(tmp_path, max_batches=1)
    [batch] = reopened.pending()
    assert (batch.seq, batch.dropped_samples) == (2, 3)


def test_a_full_spool_drops_samples_but_moves_traffic_into_the_new_batch(tmp_path):
    spool = Spool(tmp_path, max_batches=2)
    alice = agent_pb2.UserTraffic(email="alice", uplink_bytes=1, downlink_bytes=1000)
    peer = agent_pb2.PeerTraffic(interface="wg0", public_key="pk", rx_bytes=7)
    spool.append([sample(1)], v2ray_users=[alice], wireguard_peers=[peer])  # seq 1
    spool.append([sample(2)])  # seq 2
    bob = agent_pb2.UserTraffic(email="bob", downlink_bytes=5)
    batch3 = spool.append([sample(3)], v2ray_users=[bob])  # full: seq 1 goes, its traffic rides in seq 3
    assert seqs(spool) == [2, 3] and batch3.dropped_samples == 1
    assert list(batch3.v2ray_users) == [alice, bob] and list(batch3.wireguard_peers) == [peer]
    [_, stored] = Spool(tmp_path, max_batches=2).pending()
    assert stored == batch3
    assert sum(u.downlink_bytes for b in spool.pending() for u in b.v2ray_users) == 1005  # nothing lost


class Crash(BaseException):
    """Stands in for the process dying at a given point of Spool.append."""


def total_downlink(spool: Spool) -> int:
    return sum(u.downlink_bytes for b in spool.pending() for u in b.v2ray_users)


def full_spool_with_traffic(tmp_path) -> Spool:
    spool = Spool(tmp_path, max_batches=2)
    spool.append([sample(1)], v2ray_users=[agent_pb2.UserTraffic(email="alice", downlink_bytes=1000)])  # seq 1
    spool.append([sample(2)])  # seq 2
    return spool


def test_a_crash_after_the_carrying_batch_is_written_keeps_one_copy_of_the_traffic(tmp_path, monkeypatch):
    spool = full_spool_with_traffic(tmp_path)

    def crash(self, seq):
        raise Crash

    monkeypatch.setattr(Spool, "_unlink", crash)  # dies between writing seq 3 and removing seq 1
    with pytest.raises(Crash):
        spool.append([sample(3)], v2ray_users=[agent_pb2.UserTraffic(email="bob", downlink_bytes=5)])
    assert (tmp_path / batch_file_name(1)).exists() and (tmp_path / batch_file_name(3)).exists()
    monkeypatch.undo()
    restarted = Spool(tmp_path, max_batches=2)
    assert seqs(restarted) == [2, 3] and not (tmp_path / batch_file_name(1)).exists()
    assert total_downlink(restarted) == 1005  # alice's 1000 counted once, not twice
    assert restarted.append([sample(4)]).seq == 4


def test_a_crash_before_the_carrying_batch_is_written_keeps_the_old_batches(tmp_path, monkeypatch):
    spool = full_spool_with_traffic(tmp_path)
    real_write = spool_module.write_atomic

    def crash_on_batches(path, data, mode):
        if path.name.endswith(".pb"):
            raise Crash
        real_write(path, data, mode)

    monkeypatch.setattr(spool_module, "write_atomic", crash_on_batches)
    with pytest.raises(Crash):
        spool.append([sample(3)])
    monkeypatch.undo()
    restarted = Spool(tmp_path, max_batches=2)
    assert seqs(restarted) == [1, 2] and total_downlink(restarted) == 1000  # nothing lost
    assert restarted.append([sample(3)]).seq == 3


def test_rejects_a_zero_bound(tmp_path):
    with pytest.raises(ValueError):
        Spool(tmp_path, max_batches=0)
