"""A one-slot mailbox that keeps only the newest value: for things where the latest supersedes the rest.

Desired states are always whole (the newest one is all that matters), and so are applied reports; a slot
that overwrites instead of queueing can neither grow nor make a producer wait for a slow consumer.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


class Latest(Generic[T]):
    """Holds the newest value and a version that increases on every set(). Event-loop only."""

    def __init__(self) -> None:
        self._value: T | None = None
        self._version = 0
        self._changed = asyncio.Event()

    @property
    def version(self) -> int:
        return self._version

    @property
    def value(self) -> T | None:
        return self._value

    def set(self, value: T) -> None:
        self._value = value
        self._version += 1
        # Wake everyone waiting on this generation, then start a fresh one.
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_newer(self, seen_version: int) -> tuple[int, T]:
        """Wait until the version exceeds seen_version; return (version, value)."""
        while self._version <= seen_version:
            await self._changed.wait()
        assert self._value is not None
        return self._version, self._value
