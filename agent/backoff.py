"""Reconnect delays: exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff
And Jitter"). Full jitter spreads a fleet's reconnects evenly, so a controller restart is not followed by
a thundering herd of thousands of agents dialling in the same instant."""

from __future__ import annotations

import random

#: First ceiling of the random delay, seconds.
BASE_SECONDS = 0.5
#: Largest delay ever returned, seconds.
CAP_SECONDS = 30.0
#: A stream that lived at least this long counts as healthy: the next failure starts again from BASE.
HEALTHY_AFTER_SECONDS = 30.0


class Backoff:
    """Produces the delay before each retry: uniform(0, min(cap, base * 2**attempt))."""

    def __init__(
        self,
        base: float = BASE_SECONDS,
        cap: float = CAP_SECONDS,
        healthy_after: float = HEALTHY_AFTER_SECONDS,
        rng: random.Random | None = None,
    ) -> None:
        self.base = base
        self.cap = cap
        self.healthy_after = healthy_after
        self._rng = rng or random.Random()
        self._attempt = 0

    @property
    def attempt(self) -> int:
        """How many delays were handed out since the last reset."""
        return self._attempt

    def ceiling(self) -> float:
        """Upper bound of the next delay."""
        # min() on the exponent first keeps 2**attempt from growing without bound after days offline.
        return min(self.cap, self.base * 2 ** min(self._attempt, 32))

    def next_delay(self) -> float:
        """The delay to wait before the next attempt; each call widens the window until the cap."""
        delay = self._rng.uniform(0.0, self.ceiling())
        self._attempt += 1
        return delay

    def reset(self) -> None:
        self._attempt = 0

    def session_ended(self, lasted_seconds: float) -> None:
        """Record how long a stream lived; a healthy one resets the backoff."""
        if lasted_seconds >= self.healthy_after:
            self.reset()


def jittered(interval: float, rng: random.Random, spread: float = 0.2) -> float:
    """interval scaled by a random factor in [1 - spread, 1 + spread], so a fleet's heartbeats spread out."""
    return interval * rng.uniform(1.0 - spread, 1.0 + spread)
