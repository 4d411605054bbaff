"""Rate limits (seed 001): a token bucket per key, per signed-in account, per anonymous source address, and per
source address on the public subscription URL.

A bucket holds ``burst`` requests (default: the per-minute limit) and refills at ``limit`` per minute. Every
answer carries ``X-RateLimit-Limit`` (per minute), ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (Unix
time at which the bucket is full again); a refused one is ``429 RATE_LIMIT_EXCEEDED`` with ``Retry-After``.
At most ``max_tracked`` buckets are kept (the least recently used goes first), so memory stays bounded
whatever the callers do; a forgotten bucket comes back full, which only ever favours the caller.
"""

from __future__ import annotations

import collections
import datetime as dt
import math
import time
from dataclasses import dataclass
from typing import Callable

from controller.errors import RateLimitExceeded

MAX_TRACKED = 100_000
#: float slack in token counts (far below one request)
EPSILON = 1e-9


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    #: Unix time (whole seconds) when the bucket is full again
    reset: int
    #: seconds until one request is allowed (0 when allowed)
    retry_after: int

    def headers(self) -> list[tuple[bytes, bytes]]:
        out = [(b"x-ratelimit-limit", str(self.limit).encode()),
               (b"x-ratelimit-remaining", str(self.remaining).encode()),
               (b"x-ratelimit-reset", str(self.reset).encode())]
        if not self.allowed:
            out.append((b"x-ratelimit-retry-after", str(self.retry_after).encode()))
        return out

    def error(self) -> RateLimitExceeded:
        reset_time = dt.datetime.fromtimestamp(self.reset, dt.timezone.utc).isoformat().replace("+00:00", "Z")
        return RateLimitExceeded(f"rate limit of {self.limit} requests per minute exceeded; retry in "
                                 f"{self.retry_after} s", self.retry_after,
                                 {"limit": self.limit, "remaining": 0, "reset_time": reset_time,
                                  "retry_after": self.retry_after})


class RateLimiter:
    """Token buckets by name. ``clock`` is monotonic; ``wall`` gives the Unix time the Reset header shows."""

    def __init__(self, max_tracked: int = MAX_TRACKED, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.max_tracked = max_tracked
        self.clock = clock
        self.wall = wall
        #: name -> (tokens, at); least recently used first
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()

    def hit(self, name: str, per_minute: int, burst: int | None = None) -> Decision:
        """Take one request from bucket ``name``, or refuse it."""
        # below one a minute cannot be expressed (settings and key bodies refuse it); never divide by zero
        per_minute = max(1, per_minute)
        capacity = float(max(1, burst or per_minute))
        rate = per_minute / 60.0  # tokens per second
        now = self.clock()
        tokens, at = self._buckets.pop(name, (capacity, now))
        tokens = min(capacity, tokens + max(0.0, now - at) * rate)
        # refills like 7/min leave 0.9999999 where 1 is due: compare and count with a hair of slack
        allowed = tokens >= 1.0 - EPSILON
        if allowed:
            tokens = max(0.0, tokens - 1.0)
        self._buckets[name] = (tokens, now)
        while len(self._buckets) > self.max_tracked:
            self._buckets.popitem(last=False)
        full_in = max(0.0, capacity - tokens - EPSILON) / rate
        retry_after = 0 if allowed else max(1, math.ceil((1.0 - tokens - EPSILON) / rate))
        return Decision(allowed, per_minute, int(tokens + EPSILON), math.ceil(self.wall() + full_in), retry_after)

    def __len__(self) -> int:
        return len(self._buckets)
