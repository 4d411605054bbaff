"""Per-peer transfer for telemetry: cumulative device counters turned into deltas, each byte reported once.

take() returns what moved since the previous take and advances the baseline at once; if the batch
carrying it cannot be spooled the caller gives it back and it rides with the next batch. Baselines are
kept on disk so an agent restart neither re-reports nor loses what the adopted devices counted.
Counters that went down (wireguard-go restarted, peer re-added) count from zero: the new value is the delta.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from agent.atomicfile import write_atomic
from agent.telemetry import counter_delta
from agent.wireguard.model import DeviceState, PeerState, short_key
from protos import agent_pb2

log = logging.getLogger(__name__)

#: WireGuard drops a session 180 s after its last handshake (REJECT_AFTER_TIME).
SESSION_SECONDS = 180

#: Events for the live logs: (level, message).
Event = tuple[str, str]


def _key(entry: agent_pb2.PeerTraffic) -> tuple[str, str]:
    return entry.interface, entry.public_key


def merge(entries: Iterable[agent_pb2.PeerTraffic]) -> list[agent_pb2.PeerTraffic]:
    """One entry per (interface, peer): deltas summed, the latest handshake kept."""
    merged: dict[tuple[str, str], agent_pb2.PeerTraffic] = {}
    for entry in entries:
        have = merged.get(_key(entry))
        if have is None:
            merged[_key(entry)] = agent_pb2.PeerTraffic()
            merged[_key(entry)].CopyFrom(entry)
            continue
        have.rx_bytes += entry.rx_bytes
        have.tx_bytes += entry.tx_bytes
        have.last_handshake_ms = max(have.last_handshake_ms, entry.last_handshake_ms)
        have.peer_id = have.peer_id or entry.peer_id
    return list(merged.values())


class TrafficMeter:
    """Baselines per interface and peer: [rx, tx, last_handshake_ms]. Thread-safe."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self._baseline: dict[str, dict[str, list[int]]] = {}
        # Deltas taken from the devices but not yet in a spooled batch (removed peers, given back).
        self._carry: list[agent_pb2.PeerTraffic] = []
        self._up: set[tuple[str, str]] = set()
        self._load()

    # -- the driver's side: devices created, adopted, peers removed ----------------------------------------

    def reset(self, iface: str) -> None:
        """The device was (re)created: its counters start from zero."""
        with self._lock:
            self._baseline[iface] = {}
            self._save()

    def adopt(self, iface: str, device: DeviceState) -> None:
        """An existing device was adopted: without a stored baseline, count from what it shows now."""
        with self._lock:
            if iface in self._baseline:
                return
            self._baseline[iface] = {
                p: [s.rx_bytes, s.tx_bytes, s.last_handshake_ms] for p, s in device.peers.items()
            }
            self._save()

    def retire(self, iface: str, peers: dict[str, PeerState], peer_ids: dict[str, str]) -> None:
        """Peers are about to be removed: keep their last deltas for the next batch, forget their baselines."""
        with self._lock:
            base = self._baseline.setdefault(iface, {})
            for public, state in peers.items():
                entry = self._delta(iface, public, state, base.pop(public, None), peer_ids.get(public, ""))
                if entry is not None:
                    self._carry.append(entry)
                self._up.discard((iface, public))
            self._save()

    def forget(self, iface: str) -> None:
        with self._lock:
            self._baseline.pop(iface, None)
            self._up = {k for k in self._up if k[0] != iface}
            self._save()

    # -- the telemetry side --------------------------------------------------------------------------------

    def take(
        self, devices: dict[str, tuple[DeviceState, dict[str, str]]], now_ms: int | None = None
    ) -> tuple[list[agent_pb2.PeerTraffic], list[Event]]:
        """Deltas since the previous take for `devices` ({iface: (state, peer ids)}), and live-log events.

        Interfaces not in `devices` (unreadable right now) keep their baselines. If the baselines cannot be
        written this raises, and the deltas stay carried for the next take.
        """
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        events: list[Event] = []
        with self._lock:
            entries = self._carry
            self._carry = []
            for iface, (device, peer_ids) in devices.items():
                old = self._baseline.get(iface, {})
                new: dict[str, list[int]] = {}
                for public, state in device.peers.items():
                    previous = old.get(public)
                    label = f"{iface}: peer {peer_ids.get(public) or short_key(public)}"
                    entry = self._delta(iface, public, state, previous, peer_ids.get(public, ""))
                    if entry is not None:
                        entries.append(entry)
                    events.extend(self._session_events(iface, public, label, state, previous, now_ms))
                    new[public] = [state.rx_bytes, state.tx_bytes, state.last_handshake_ms]
                self._baseline[iface] = new
            entries = merge(entries)
            try:
                self._save()
            except BaseException:
                # The new baselines are not on disk, so these deltas must not leave: after a crash the old
                # baselines would count them again. Carried (in memory), they go out with the next take.
                self._carry = entries
                raise
        return entries, events

    def give_back(self, entries: Iterable[agent_pb2.PeerTraffic]) -> None:
        """Entries whose batch could not be spooled: they go out with the next take.

        Kept in memory even if the file cannot be written (that raises): the next take reports them.
        """
        with self._lock:
            self._carry = merge([*self._carry, *entries])  # merged: repeated failures must not grow it
            self._save()

    # -- internals -----------------------------------------------------------------------------------------

    @staticmethod
    def _delta(iface: str, public: str, state: PeerState, previous: list[int] | None, peer_id: str):
        prev_rx, prev_tx, prev_hs = previous or (0, 0, 0)
        rx = counter_delta(prev_rx, state.rx_bytes)
        tx = counter_delta(prev_tx, state.tx_bytes)
        if not rx and not tx and not state.last_handshake_ms > prev_hs:
            return None
        return agent_pb2.PeerTraffic(
            interface=iface,
            public_key=public,
            peer_id=peer_id,
            rx_bytes=rx,
            tx_bytes=tx,
            last_handshake_ms=state.last_handshake_ms,
        )

    def _session_events(self, iface, public, label, state, previous, now_ms) -> list[Event]:
        key = (iface, public)
        handshake = state.last_handshake_ms
        prev_hs = previous[2] if previous else 0
        fresh = handshake and now_ms - handshake < SESSION_SECONDS * 1000
        if handshake > prev_hs:
            endpoint = f" from {state.endpoint}" if state.endpoint else ""
            if key not in self._up and fresh:
                self._up.add(key)
                return [("info", f"{label}: handshake{endpoint}, session up")]
            return [("debug", f"{label}: handshake{endpoint} (key rotation)")]
        if key in self._up and not fresh:
            self._up.discard(key)
            return [("info", f"{label}: no handshake for {SESSION_SECONDS} s, session down")]
        if key not in self._up and fresh and previous is not None and handshake == prev_hs:
            self._up.add(key)  # up before this agent started: no event, but track it
        return []

    def _load(self) -> None:
        if self.path is None:
            return
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            log.error("%s is unreadable; WireGuard traffic counts from the devices' current values", self.path)
            return
        try:
            self._baseline, self._carry = _parse(data)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            # Valid JSON of the wrong shape must not keep the agent from starting (nor make every take fail).
            log.error("%s is damaged (%s); WireGuard traffic counts from the devices' current values",
                      self.path, type(exc).__name__)

    def _save(self) -> None:
        if self.path is None:
            return
        carry = [
            {
                "interface": e.interface,
                "public_key": e.public_key,
                "peer_id": e.peer_id,
                "rx_bytes": e.rx_bytes,
                "tx_bytes": e.tx_bytes,
                "last_handshake_ms": e.last_handshake_ms,
            }
            for e in self._carry
        ]
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(self.path, json.dumps({"baseline": self._baseline, "carry": carry}).encode(), 0o600)


def _baseline_entry(value: Any) -> list[int]:
    """[rx, tx, last_handshake_ms] from the file; anything else is damage (take would fail on it)."""
    rx, tx, handshake = value
    if not all(isinstance(n, int) and n >= 0 for n in (rx, tx, handshake)):
        raise ValueError("bad counter")
    return [rx, tx, handshake]


def _parse(data: Any) -> tuple[dict[str, dict[str, list[int]]], list[agent_pb2.PeerTraffic]]:
    """(baselines, carry) from the traffic file's content; raises on anything but the shape _save writes."""
    baseline = {
        str(iface): {str(p): _baseline_entry(v) for p, v in peers.items()}
        for iface, peers in (data.get("baseline") or {}).items()
    }
    fields = agent_pb2.PeerTraffic.DESCRIPTOR.fields_by_name
    # PeerTraffic() itself rejects wrong types and negative counts.
    carry = [agent_pb2.PeerTraffic(**{k: v for k, v in e.items() if k in fields}) for e in data.get("carry") or []]
    return baseline, carry
