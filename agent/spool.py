"""Bounded on-disk spool of telemetry batches awaiting the controller's acknowledgement.

Layout under the spool directory:
  00000000000000000042.pb  one serialized TelemetryBatch per file, named by its sequence number
  meta.json                {"next_seq": N}: survives restarts (and acks of everything) so a seq is never reused;
                           while a full spool evicts, also {"evicting": [new_seq, through_seq]} (see append)

Thread-safe: the engine calls it from worker threads (file I/O and fsync stay off the event loop).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import threading
from pathlib import Path
from typing import Iterable

from google.protobuf.message import DecodeError

from agent.atomicfile import fsync_dir, write_atomic
from protos import agent_pb2

log = logging.getLogger(__name__)

META_FILE = "meta.json"
_SUFFIX = ".pb"


def batch_file_name(seq: int) -> str:
    return f"{seq:020d}{_SUFFIX}"


def merge_users(entries: Iterable[agent_pb2.UserTraffic]) -> list[agent_pb2.UserTraffic]:
    """One entry per email (the subscriber the controller bills), bytes summed, in order of first appearance."""
    merged: dict[str, agent_pb2.UserTraffic] = {}
    for entry in entries:
        have = merged.setdefault(entry.email, agent_pb2.UserTraffic(email=entry.email))
        have.uplink_bytes += entry.uplink_bytes
        have.downlink_bytes += entry.downlink_bytes
    return list(merged.values())


def merge_peers(entries: Iterable[agent_pb2.PeerTraffic]) -> list[agent_pb2.PeerTraffic]:
    """One entry per (interface, public key, peer id), bytes summed, the latest handshake kept.

    The peer id is part of the key because the controller bills by it: a key re-used for another peer
    must not move bytes between the two.
    """
    merged: dict[tuple[str, str, str], agent_pb2.PeerTraffic] = {}
    for entry in entries:
        key = (entry.interface, entry.public_key, entry.peer_id)
        have = merged.setdefault(key, agent_pb2.PeerTraffic(interface=key[0], public_key=key[1], peer_id=key[2]))
        have.rx_bytes += entry.rx_bytes
        have.tx_bytes += entry.tx_bytes
        have.last_handshake_ms = max(have.last_handshake_ms, entry.last_handshake_ms)
    return list(merged.values())


class Spool:
    """Telemetry batches on disk, oldest first, at most `max_batches` of them."""

    def __init__(self, directory: str | Path, max_batches: int) -> None:
        if max_batches < 1:
            raise ValueError("max_batches must be >= 1")
        self.directory = Path(directory)
        self.max_batches = max_batches
        self._lock = threading.Lock()
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._seqs: collections.deque[int] = collections.deque(sorted(self._scan()))
        meta = self._read_meta()
        # The files win over meta.json if a crash came between writing a batch and updating meta.
        last_on_disk = self._seqs[-1] if self._seqs else 0
        self._next_seq = max(int(meta.get("next_seq", 1)), last_on_disk + 1, 1)
        if "evicting" in meta:
            self._finish_eviction(*meta["evicting"])

    # -- reading ----------------------------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """Highest sequence number ever produced (0: none yet)."""
        with self._lock:
            return self._next_seq - 1

    def __len__(self) -> int:
        with self._lock:
            return len(self._seqs)

    def pending(self) -> list[agent_pb2.TelemetryBatch]:
        """Every unacknowledged batch, oldest first."""
        return self.pending_after(0)

    def pending_after(self, seq: int, limit: int | None = None) -> list[agent_pb2.TelemetryBatch]:
        """Unacknowledged batches with a sequence number above seq, oldest first."""
        with self._lock:
            wanted = [s for s in self._seqs if s > seq]
        if limit is not None:
            wanted = wanted[:limit]
        batches = []
        for s in wanted:
            batch = self._read_batch(s)
            if batch is not None:  # acked or dropped meanwhile
                batches.append(batch)
        return batches

    # -- writing ----------------------------------------------------------------------------------------

    def append(
        self,
        samples: Iterable[agent_pb2.MetricSample],
        wireguard_peers: Iterable[agent_pb2.PeerTraffic] = (),
        v2ray_users: Iterable[agent_pb2.UserTraffic] = (),
    ) -> agent_pb2.TelemetryBatch:
        """Store a new batch with the next sequence number (samples, plus per-peer/per-user traffic if any).

        If the spool is full the oldest batches go first: their samples are lost (the new batch carries how
        many, so the loss reaches the controller with the very batch that caused it), but their traffic is
        not: it moves into the new batch, because usage is what subscribers are billed and limited by.
        """
        with self._lock:
            dropped = 0
            carried_peers: list[agent_pb2.PeerTraffic] = []
            carried_users: list[agent_pb2.UserTraffic] = []
            evicted: list[int] = []
            while len(self._seqs) - len(evicted) >= self.max_batches:
                seq = self._seqs[len(evicted)]
                old = self._read_batch(seq)
                if old is not None:
                    dropped += len(old.metrics)
                    carried_peers.extend(old.wireguard_peers)
                    carried_users.extend(old.v2ray_users)
                evicted.append(seq)
            if evicted:
                # Merged, not concatenated: a batch that carries traffic is itself evicted and carried again
                # while the controller is away, and must stay bounded by the number of users and peers (else it
                # outgrows gRPC's message limit and telemetry wedges for good).
                wireguard_peers = merge_peers([*carried_peers, *wireguard_peers])
                v2ray_users = merge_users([*carried_users, *v2ray_users])
            batch = agent_pb2.TelemetryBatch(
                seq=self._next_seq,
                metrics=list(samples),
                dropped_samples=dropped,
                wireguard_peers=list(wireguard_peers),
                v2ray_users=list(v2ray_users),
            )
            if evicted:
                # Say what is about to happen before doing it. The new batch carries the old ones' traffic, so
                # after a crash the next start must keep exactly one copy: the old files if the new batch
                # never reached the disk, the new batch (finishing the eviction) if it did.
                self._write_meta(evicting=[batch.seq, evicted[-1]])
            write_atomic(self.directory / batch_file_name(batch.seq), batch.SerializeToString(), 0o600)
            for seq in evicted:
                self._seqs.popleft()
                self._unlink(seq)
                log.warning("telemetry spool full (%d batches): dropped the samples of batch %d, kept its traffic",
                            self.max_batches, seq)
            self._seqs.append(batch.seq)
            self._next_seq += 1
            self._write_meta()
            return batch

    def ack(self, acked_seq: int) -> int:
        """Forget every batch with seq <= acked_seq (the controller stored them). Returns how many."""
        removed = 0
        with self._lock:
            while self._seqs and self._seqs[0] <= acked_seq:
                self._unlink(self._seqs.popleft())
                removed += 1
            if removed:
                fsync_dir(self.directory)
        return removed

    # -- internals --------------------------------------------------------------------------------------

    def _finish_eviction(self, new_seq: int, through_seq: int) -> None:
        """Complete (or forget) an eviction a crash interrupted; see append()."""
        if new_seq in self._seqs:
            while self._seqs and self._seqs[0] <= through_seq:
                self._unlink(self._seqs.popleft())
            log.warning("telemetry spool: finished dropping batches up to %d (their traffic is in batch %d)",
                        through_seq, new_seq)
        self._write_meta()

    def _unlink(self, seq: int) -> None:
        try:
            os.unlink(self.directory / batch_file_name(seq))
        except FileNotFoundError:
            pass

    def _read_batch(self, seq: int) -> agent_pb2.TelemetryBatch | None:
        try:
            data = (self.directory / batch_file_name(seq)).read_bytes()
        except FileNotFoundError:
            return None
        batch = agent_pb2.TelemetryBatch()
        try:
            batch.ParseFromString(data)
        except DecodeError:
            # Writes are atomic, so only a damaged disk gets here; skip the batch rather than wedge the spool.
            log.error("telemetry spool: batch %d is unreadable, skipping it", seq)
            return None
        return batch

    def _scan(self) -> list[int]:
        seqs = []
        for entry in self.directory.iterdir():
            stem = entry.name[: -len(_SUFFIX)]
            if entry.name.endswith(_SUFFIX) and stem.isdigit():
                seqs.append(int(stem))
        return seqs

    def _read_meta(self) -> dict:
        try:
            return json.loads((self.directory / META_FILE).read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def _write_meta(self, **extra: object) -> None:
        meta = {"next_seq": self._next_seq, **extra}
        write_atomic(self.directory / META_FILE, json.dumps(meta).encode(), 0o600)
