"""Recent log lines of every node, kept in memory (bounded per node) and fanned out as live events."""

from __future__ import annotations

import datetime as dt
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable

from controller.events import Event, EventBus
from protos import agent_pb2

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


def level_value(level: str) -> int:
    return LEVELS.get(level.lower(), 20)


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


class LogStore:
    def __init__(self, bus: EventBus, lines_per_node: int) -> None:
        self._bus = bus
        self._lines_per_node = lines_per_node
        self._lines: dict[str, deque[LogRecord]] = {}
        #: lines agents reported as dropped (their buffer overflowed), per node
        self.agent_dropped: dict[str, int] = {}

    def add(self, node_id: str, lines: Iterable[agent_pb2.LogLine], dropped: int = 0) -> None:
        buf = self._lines.setdefault(node_id, deque(maxlen=self._lines_per_node))
        if dropped:
            self.agent_dropped[node_id] = self.agent_dropped.get(node_id, 0) + dropped
        for line in lines:
            record = LogRecord(
                node_id=node_id,
                ts=dt.datetime.fromtimestamp(line.ts_ms / 1000, dt.timezone.utc),
                level=(line.level or "info").lower(),
                source=line.source or "agent",
                message=line.message,
            )
            buf.append(record)
            self._bus.publish(Event("log", {"log": record.to_dict()}, node_id=node_id))

    def query(self, node_id: str, level: str = "debug", search: str | None = None,
              since: dt.datetime | None = None, limit: int = 200) -> list[LogRecord]:
        """The newest ``limit`` matching lines, oldest first."""
        min_level = level_value(level)
        matching = [r for r in self._lines.get(node_id, ()) if r.matches(min_level, search, since)]
        return matching[-limit:]

    def forget(self, node_id: str) -> None:
        self._lines.pop(node_id, None)
        self.agent_dropped.pop(node_id, None)
