"""Per-user traffic for telemetry: V2Ray's counters, read and zeroed, turned into deltas counted exactly once.

V2Ray keeps one counter per user and direction (user>>>EMAIL>>>traffic>>>uplink|downlink). Reading them with
reset=true hands over what moved since the previous read; from then on those bytes exist only in the agent.
So the meter writes them to disk (fsync) before they leave it:

    take(seq, counters)  the counters plus anything carried, recorded as "pending for batch seq", returned
    spooled(seq)         the batch seq is in the spool: a pending record with seq <= that is delivered; drop it
    give_back(entries)   the batch could not be spooled: the entries are carried to the next take
    keep(counters)       counters read outside a take (just before V2Ray is restarted or stopped): carried

After an agent crash the record is loaded again. MetricsLoop then calls spooled(spool.last_seq): if the
batch made it into the spool the record is dropped (delivered), otherwise it is carried and goes out with
the next batch. A leftover record is also resolved by the next take itself: take(seq) treats a pending
record for a batch before seq as spooled (the spool already holds that number) and one for seq or later as
never spooled. Either way no byte is counted twice and none is lost. What cannot be saved: bytes V2Ray
counted but nobody read before V2Ray itself died, and the few milliseconds between V2Ray zeroing its
counters and the fsync here.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any, Iterable, Mapping

from agent.atomicfile import write_atomic
from protos import agent_pb2

log = logging.getLogger(__name__)

USER_PREFIX = "user>>>"
#: {email: (uplink bytes, downlink bytes)}
Counters = Mapping[str, tuple[int, int]]


def parse_user_stats(stats: Mapping[str, int]) -> dict[str, tuple[int, int]]:
    """Sum V2Ray's `user>>>EMAIL>>>traffic>>>uplink|downlink` counters per email; other names are ignored."""
    users: dict[str, list[int]] = {}
    for name, value in stats.items():
        parts = name.split(">>>")
        if len(parts) != 4 or parts[0] != "user" or parts[2] != "traffic" or parts[3] not in ("uplink", "downlink"):
            continue
        pair = users.setdefault(parts[1], [0, 0])
        pair[0 if parts[3] == "uplink" else 1] += max(0, int(value))
    return {email: (up, down) for email, (up, down) in users.items()}


def _add(into: dict[str, list[int]], email: str, up: int, down: int) -> None:
    if up or down:
        pair = into.setdefault(email, [0, 0])
        pair[0] += up
        pair[1] += down


class UsageMeter:
    """Carried and pending per-user deltas, persisted in one JSON file. Thread-safe."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        #: Deltas not yet handed to any batch.
        self._carry: dict[str, list[int]] = {}
        #: (seq, deltas) handed to batch seq, until that batch is known to be spooled.
        self._pending: tuple[int, dict[str, list[int]]] | None = None
        self._load()

    # -- the telemetry side (TrafficSource) ----------------------------------------------------------------

    def take(self, seq: int, counters: Counters) -> list[agent_pb2.UserTraffic]:
        """Everything to report in batch seq: counters (just read and zeroed) plus what was carried.

        If the record cannot be written this raises, and everything stays carried for the next take.
        """
        with self._lock:
            changed = self._resolve(seq - 1)
            deltas = self._carry
            for email, (up, down) in counters.items():
                _add(deltas, email, up, down)
            self._carry = {}
            self._pending = (seq, deltas) if deltas else None
            if deltas or changed:
                try:
                    self._save()
                except BaseException:
                    # Not recorded as pending, so they must not leave: a batch spooled with them plus the old
                    # file after a crash would count them twice. V2Ray's counters are already zeroed, so they
                    # stay here (in memory) for the next take.
                    self._carry, self._pending = deltas, None
                    raise
            return [
                agent_pb2.UserTraffic(email=email, uplink_bytes=up, downlink_bytes=down)
                for email, (up, down) in sorted(deltas.items())
            ]

    def spooled(self, seq: int) -> None:
        """Batch seq (and every one before it) is in the spool."""
        with self._lock:
            if self._pending is not None and self._pending[0] <= seq:
                self._pending = None
                self._save()

    def give_back(self, entries: Iterable[agent_pb2.UserTraffic]) -> None:
        """The batch holding these entries was not spooled: carry them to the next take."""
        with self._lock:
            for entry in entries:
                _add(self._carry, entry.email, entry.uplink_bytes, entry.downlink_bytes)
            self._pending = None
            self._save()

    # -- the driver's side ---------------------------------------------------------------------------------

    def keep(self, counters: Counters) -> None:
        """Counters read outside a take (V2Ray is about to restart or stop): carry them, durably."""
        with self._lock:
            before = dict(self._carry)
            for email, (up, down) in counters.items():
                _add(self._carry, email, up, down)
            if self._carry != before:
                self._save()

    def carried(self) -> dict[str, tuple[int, int]]:
        """What the next take reports on top of V2Ray's counters (for tests and diagnostics)."""
        with self._lock:
            merged: dict[str, list[int]] = {e: list(v) for e, v in self._carry.items()}
            if self._pending is not None:
                for email, (up, down) in self._pending[1].items():
                    _add(merged, email, up, down)
            return {e: (up, down) for e, (up, down) in merged.items()}

    # -- internals -----------------------------------------------------------------------------------------

    def _resolve(self, last_spooled: int) -> bool:
        """Settle a pending record left from before: delivered if its batch is at or before last_spooled,
        carried otherwise. True if there was one."""
        if self._pending is None:
            return False
        seq, deltas = self._pending
        self._pending = None
        if seq > last_spooled:  # that batch never reached the spool: report it again
            for email, (up, down) in deltas.items():
                _add(self._carry, email, up, down)
        return True

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            log.error("%s is unreadable; V2Ray traffic it held is lost", self.path)
            return
        try:
            carry, pending = _parse(data)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            # Valid JSON of the wrong shape must not keep the agent from starting. Only the exception's type is
            # logged: its text could quote the file, i.e. subscribers' emails.
            log.error("%s is damaged (%s); V2Ray traffic it held is lost", self.path, type(exc).__name__)
            return
        self._carry, self._pending = carry, pending

    def _save(self) -> None:
        pending = None
        if self._pending is not None:
            pending = {"seq": self._pending[0], "entries": self._pending[1]}
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(self.path, json.dumps({"pending": pending, "carry": self._carry}).encode(), 0o600)


def _pair(value: Any) -> list[int]:
    """[uplink, downlink] from the file. Anything but two counts >= 0 is damage: loaded, it would make every
    take fail (UserTraffic's fields are unsigned)."""
    up, down = value
    if not all(isinstance(n, int) and n >= 0 for n in (up, down)):
        raise ValueError("bad byte count")
    return [up, down]


def _parse(data: Any) -> tuple[dict[str, list[int]], tuple[int, dict[str, list[int]]] | None]:
    """(carry, pending) from traffic.json's content; raises on anything but the shape _save writes."""
    carry = {str(email): _pair(pair) for email, pair in (data.get("carry") or {}).items()}
    pending = None
    if data.get("pending"):
        entries = {str(email): _pair(pair) for email, pair in data["pending"]["entries"].items()}
        pending = (int(data["pending"]["seq"]), entries)
    return carry, pending
