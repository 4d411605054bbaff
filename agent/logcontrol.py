"""The agent's logging: stderr (for journald) plus the buffer streamed to the controller, one level for both.

The level can change at run time (the "agent" component of the desired state); LogControl is the one
place that knows how to change it.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from agent.logbuffer import LOG_LEVELS, LogBuffer, LogBufferHandler

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class LogControl:
    """Installs the agent's log handlers on the root logger and sets the level at run time."""

    def __init__(self, buffer: LogBuffer, level: str = "info", stream: TextIO | None = None) -> None:
        self.buffer = buffer
        self._stream_handler = logging.StreamHandler(stream or sys.stderr)
        self._stream_handler.setFormatter(logging.Formatter(_FORMAT))
        self._buffer_handler = LogBufferHandler(buffer)
        root = logging.getLogger()
        root.addHandler(self._stream_handler)
        root.addHandler(self._buffer_handler)
        self._level = ""
        self.set_level(level)

    @property
    def level(self) -> str:
        return self._level

    def set_level(self, level: str) -> None:
        """Apply level ("debug", "info", "warning", "error") to the agent's own loggers and the handlers."""
        levelno = LOG_LEVELS[level]
        # The agent's loggers follow the setting; libraries (grpc, asyncio) stay at warning or above even
        # in debug, so "debug" shows the agent's reasoning rather than every poll of the event loop.
        logging.getLogger("agent").setLevel(levelno)
        logging.getLogger().setLevel(max(levelno, logging.WARNING))
        self._stream_handler.setLevel(levelno)
        self._buffer_handler.setLevel(levelno)
        self._level = level

    def close(self) -> None:
        root = logging.getLogger()
        root.removeHandler(self._stream_handler)
        root.removeHandler(self._buffer_handler)
