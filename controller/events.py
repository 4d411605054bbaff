"""In-process event bus behind the SSE streams (node changes, node logs, shutdown).

Every subscriber has its own bounded queue. Publishing never waits: when a subscriber's queue is full the
event is dropped *for that subscriber only* and counted, so a slow reader never slows the controller.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any, Callable

#: seed 003's event types
EVENT_TYPES = ("initial", "create", "update", "delete", "shutdown", "log")


@dataclass
class Event:
    type: str
    data: dict[str, Any]
    #: which node the event is about (None for fleet-wide events such as shutdown)
    node_id: str | None = None


@dataclass(eq=False)
class Subscription:
    """One reader. ``dropped`` counts the events it lost because it read too slowly."""

    accepts: Callable[[Event], bool]
    queue: asyncio.Queue[Event]
    dropped: int = 0
    closed: bool = False

    async def get(self) -> Event:
        return await self.queue.get()


class EventBus:
    def __init__(self, queue_size: int = 1000) -> None:
        self._queue_size = queue_size
        self._subs: set[Subscription] = set()
        self._ids = itertools.count(1)
        self.published = 0

    def subscribe(self, accepts: Callable[[Event], bool] = lambda e: True,
                  queue_size: int | None = None) -> Subscription:
        sub = Subscription(accepts=accepts, queue=asyncio.Queue(queue_size or self._queue_size))
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        sub.closed = True
        self._subs.discard(sub)

    def publish(self, event: Event) -> None:
        self.published += 1
        for sub in tuple(self._subs):
            if not sub.accepts(event):
                continue
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                sub.dropped += 1

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)
