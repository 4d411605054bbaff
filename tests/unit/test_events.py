from __future__ import annotations

import asyncio

from controller.events import Event, EventBus


async def test_a_slow_reader_loses_events_counted_and_others_get_all() -> None:
    bus = EventBus(queue_size=5)
    slow = bus.subscribe()
    fast = bus.subscribe()
    only_logs = bus.subscribe(lambda e: e.type == "log")
    received = []
    for i in range(20):
        bus.publish(Event("update", {"i": i}))
        received.append((await fast.get()).data["i"])
    bus.publish(Event("log", {"line": "x"}))
    assert received == list(range(20))
    assert slow.dropped == 16 and slow.queue.qsize() == 5  # 15 updates + the log event
    assert [(await slow.get()).data["i"] for _ in range(5)] == [0, 1, 2, 3, 4]
    assert (await asyncio.wait_for(only_logs.get(), 1)).type == "log" and only_logs.dropped == 0
    bus.unsubscribe(slow)
    assert bus.subscriber_count == 2
