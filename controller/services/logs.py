"""Recent log lines of every node, kept in memory (bounded per node) and fanned out as live events.

What a node sends is bounded here (DESIGN.md, security rule 2): each message is cut to ``line_max_bytes`` of
UTF-8 (on a character boundary, with a marker saying how much went), level and source to a few characters,
a timestamp the clock cannot hold or far in the future becomes the controller's time, and each node may send
``lines_per_second`` (a token bucket holding BURST_SECONDS of them); lines beyond it are dropped and counted
with the lines the agent itself dropped. The text is stored as it came otherwise: whoever prints it to a
terminal strips control characters (the CLI does).
"""

from __future__ import annotations

import datetime as dt
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from controller.events import Event, EventBus
from protos import agent_pb2

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
#: appended to a cut message; counts towards the cap
TRUNCATED_MARKER = " …[truncated {} bytes]"
MAX_LEVEL_CHARS = 16
MAX_SOURCE_CHARS = 32
#: a node may send this many seconds' worth of lines at once
BURST_SECONDS = 10.0


def level_value(level: str) -> int:
    return LEVELS.get(level.lower(), 20)


def cap_utf8(text: str, max_bytes: int) -> str:
    """text in at most max_bytes of UTF-8, cut on a character boundary and marked when it was longer."""
    if len(text) * 4 <= max_bytes:  # cannot be over: no character takes more than 4 bytes
        return text
    data = text.encode("utf-8", "replace")
    if len(data) <= max_bytes:
        return text
    room = max(0, max_bytes - len(TRUNCATED_MARKER.format(len(data)).encode()))
    kept = data[:room].decode("utf-8", "ignore")  # "ignore" drops only a character cut in half at the end
    return kept + TRUNCATED_MARKER.format(len(data) - len(kept.encode("utf-8", "replace")))


@dataclass(frozen=True)
class LogRecord:
    node_id: str
    ts: dt.datetime
    level: str
    source: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "time": self.ts.isoformat().replace("+00:00", "Z"),
                "level": self.level, "source": self.source, "message": self.message}

    def matches(self, min_level: int, search: str | None, since: dt.datetime | None) -> bool:
        return (level_value(self.level) >= min_level
                and (since is None or self.ts > since)
                and (not search or search.lower() in self.message.lower()))


@dataclass
class _Tokens:
    """A node's token bucket: lines it may still send now."""

    left: float
    at: float


class LogStore:
    def __init__(self, bus: EventBus, lines_per_node: int, line_max_bytes: int = 8192,
                 lines_per_second: float = 200, max_clock_skew: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._bus = bus
        self._lines_per_node = lines_per_node
        self._line_max_bytes = line_max_bytes
        self._rate = float(lines_per_second)
        self._burst = self._rate * BURST_SECONDS
        self._skew_ms = int(max_clock_skew * 1000)
        self._clock = clock
        self._lines: dict[str, deque[LogRecord]] = {}
        self._tokens: dict[str, _Tokens] = {}
        #: lines dropped per node: by the agent (its buffer overflowed) or here (beyond the node's rate)
        self.agent_dropped: dict[str, int] = {}

    def add(self, node_id: str, lines: Iterable[agent_pb2.LogLine], dropped: int = 0) -> None:
        lines = list(lines)
        admitted = self._admit(node_id, len(lines))
        dropped += len(lines) - admitted
        if dropped:
            self.agent_dropped[node_id] = self.agent_dropped.get(node_id, 0) + dropped
        if not admitted:
            return
        buf = self._lines.setdefault(node_id, deque(maxlen=self._lines_per_node))
        now_ms = int(time.time() * 1000)
        for line in lines[:admitted]:
            record = LogRecord(
                node_id=node_id,
                ts=self._line_time(line.ts_ms, now_ms),
                level=(line.level or "info").lower()[:MAX_LEVEL_CHARS],
                source=(line.source or "agent")[:MAX_SOURCE_CHARS],
                message=cap_utf8(line.message, self._line_max_bytes),
            )
            buf.append(record)
            self._bus.publish(Event("log", {"log": record.to_dict()}, node_id=node_id))

    def _admit(self, node_id: str, n: int) -> int:
        """How many of n lines the node may send now (the rest are over its rate)."""
        now = self._clock()
        tokens = self._tokens.get(node_id)
        if tokens is None:
            tokens = self._tokens[node_id] = _Tokens(self._burst, now)
        tokens.left = min(self._burst, tokens.left + (now - tokens.at) * self._rate)
        tokens.at = now
        admitted = min(n, int(tokens.left))
        tokens.left -= admitted
        return admitted

    def _line_time(self, ts_ms: int, now_ms: int) -> dt.datetime:
        """The line's time, or now for one before 1970 or further ahead than the allowed clock skew (such a
        value may not even fit a datetime)."""
        if not 0 <= ts_ms <= now_ms + self._skew_ms:
            ts_ms = now_ms
        return dt.datetime.fromtimestamp(ts_ms / 1000, dt.timezone.utc)

    def query(self, node_id: str, level: str = "debug", search: str | None = None,
              since: dt.datetime | None = None, limit: int = 200) -> list[LogRecord]:
        """The newest ``limit`` matching lines, oldest first."""
        min_level = level_value(level)
        matching = [r for r in self._lines.get(node_id, ()) if r.matches(min_level, search, since)]
        return matching[-limit:]

    def forget(self, node_id: str) -> None:
        self._lines.pop(node_id, None)
        self._tokens.pop(node_id, None)
        self.agent_dropped.pop(node_id, None)
