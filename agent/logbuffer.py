"""Bounded in-memory buffer of log lines on their way to the controller.

Best effort by design (DESIGN.md, rule 5): when the controller is unreachable or slow, the oldest lines are
dropped and the drop is counted, so the operator sees "N lines dropped" instead of a silent gap.
The agent's own records come in through LogBufferHandler; drivers (v2ray access logs, ...) call push().
"""

from __future__ import annotations

import collections
import logging
import threading
import time

from agent.config import LOG_LEVEL_NAMES
from protos import agent_pb2

#: Levels the agent accepts in its settings, mapped to the logging module's numbers.
LOG_LEVELS: dict[str, int] = {name: logging.getLevelName(name.upper()) for name in LOG_LEVEL_NAMES}


def level_name(levelno: int) -> str:
    """The LogLine level name for a logging level number ("warning", not "WARN")."""
    if levelno >= logging.CRITICAL:
        return "critical"
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warning"
    if levelno >= logging.INFO:
        return "info"
    return "debug"


class LogBuffer:
    """Thread-safe ring of LogLine with a drop counter."""

    def __init__(self, max_lines: int) -> None:
        if max_lines < 1:
            raise ValueError("max_lines must be >= 1")
        self.max_lines = max_lines
        self._lines: collections.deque[agent_pb2.LogLine] = collections.deque()
        self._dropped = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._lines)

    @property
    def dropped(self) -> int:
        """Lines dropped since the last drain."""
        with self._lock:
            return self._dropped

    def push(self, level: str, source: str, message: str, ts_ms: int | None = None) -> None:
        """Add one line; if the buffer is full the oldest line is dropped and counted."""
        line = agent_pb2.LogLine(
            ts_ms=ts_ms if ts_ms is not None else int(time.time() * 1000),
            level=level,
            source=source,
            message=message,
        )
        with self._lock:
            if len(self._lines) >= self.max_lines:
                self._lines.popleft()
                self._dropped += 1
            self._lines.append(line)

    def drain(self, max_lines: int) -> agent_pb2.LogBatch | None:
        """Take up to max_lines oldest lines (and the drop count) as a batch; None if there is nothing."""
        with self._lock:
            if not self._lines and not self._dropped:
                return None
            count = min(max_lines, len(self._lines))
            lines = [self._lines.popleft() for _ in range(count)]
            batch = agent_pb2.LogBatch(lines=lines, dropped=self._dropped)
            self._dropped = 0
            return batch


class LogBufferHandler(logging.Handler):
    """Copies the agent's own log records into a LogBuffer as source "agent".

    Its level is the agent's current log level, so the controller receives what the operator asked for.
    """

    def __init__(self, buffer: LogBuffer, level: int = logging.INFO, source: str = "agent") -> None:
        super().__init__(level)
        self.buffer = buffer
        self.source = source

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                # Keep the traceback's last line: enough to recognise the error without a page of frames.
                exc = record.exc_info[1]
                message = f"{message}: {type(exc).__name__}: {exc}"
            self.buffer.push(level_name(record.levelno), self.source, message, int(record.created * 1000))
        except Exception:  # a logging handler must never raise into the code that logs
            self.handleError(record)
