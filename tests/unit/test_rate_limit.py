"""RateLimiter token buckets on a fake clock: burst, refill, the X-RateLimit-* values, 429 body, bounded memory."""

from __future__ import annotations

import datetime as dt

import pytest

from controller.edge.rate_limit import Decision, RateLimiter
from controller.errors import RateLimitExceeded

#: the fake wall clock's start: a whole second, so Reset values are exact
WALL0 = 1_700_000_000.0


class Clock:
    """One fake time source for both the limiter's monotonic clock and its wall clock."""

    def __init__(self) -> None:
        self.elapsed = 0.0

    def monotonic(self) -> float:
        return 500.0 + self.elapsed

    def wall(self) -> float:
        return WALL0 + self.elapsed

    def advance(self, seconds: float) -> None:
        self.elapsed += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def limiter(clock: Clock, max_tracked: int = 1000) -> RateLimiter:
    return RateLimiter(max_tracked=max_tracked, clock=clock.monotonic, wall=clock.wall)


def drain(rl: RateLimiter, name: str, per_minute: int, burst: int | None = None, most: int = 10_000) -> int:
    """Hit ``name`` until refused; how many were allowed."""
    for n in range(most):
        if not rl.hit(name, per_minute, burst).allowed:
            return n
    raise AssertionError(f"bucket {name} never refused in {most} requests")


def test_a_full_bucket_allows_the_limit_then_refuses(clock: Clock) -> None:
    rl = limiter(clock)
    decisions = [rl.hit("k", 30) for _ in range(31)]
    assert [d.allowed for d in decisions] == [True] * 30 + [False]
    assert [d.remaining for d in decisions] == list(range(29, -1, -1)) + [0]
    assert {d.limit for d in decisions} == {30}
    assert [d.retry_after for d in decisions[:30]] == [0] * 30
    # 30 a minute is one every 2 s: the refused request may retry in 2 s
    assert decisions[30].retry_after == 2


def test_refill_is_per_minute_over_sixty_per_second(clock: Clock) -> None:
    rl = limiter(clock)
    assert drain(rl, "k", 30) == 30
    clock.advance(1.9)
    assert not rl.hit("k", 30).allowed  # 0.95 of a token: not yet
    clock.advance(0.1)
    d = rl.hit("k", 30)
    assert d.allowed and d.remaining == 0
    assert not rl.hit("k", 30).allowed
    clock.advance(20)  # 10 tokens back
    assert drain(rl, "k", 30) == 10
    clock.advance(3600)  # never more than the bucket holds
    assert drain(rl, "k", 30) == 30


def test_refill_of_an_odd_rate_is_exact(clock: Clock) -> None:
    """7 a minute is one every 60/7 s; float sums must not lose the request that is due."""
    rl = limiter(clock)
    assert drain(rl, "k", 7) == 7
    for _ in range(50):
        clock.advance(60 / 7)
        d = rl.hit("k", 7)
        assert d.allowed and d.remaining == 0
        assert not rl.hit("k", 7).allowed


def test_remaining_and_reset(clock: Clock) -> None:
    rl = limiter(clock)
    first = rl.hit("k", 60)
    # one token gone at 1 a second: full again in 1 s
    assert (first.remaining, first.reset) == (59, WALL0 + 1)
    for _ in range(9):
        d = rl.hit("k", 60)
    assert (d.remaining, d.reset) == (50, WALL0 + 10)
    clock.advance(4)  # 4 back: 54 left, full in 6 s from now
    d = rl.hit("k", 60)
    assert (d.remaining, d.reset) == (53, WALL0 + 4 + 7)
    # an empty bucket is full again a whole minute later; Reset is a whole second, rounded up
    rl2 = limiter(clock)
    clock.advance(0.25)
    drain(rl2, "e", 60)
    refused = rl2.hit("e", 60)
    assert refused.remaining == 0 and refused.reset == WALL0 + 4 + 1 + 60


def test_retry_after_counts_down_to_the_next_token(clock: Clock) -> None:
    rl = limiter(clock)
    drain(rl, "k", 6)  # one every 10 s
    assert rl.hit("k", 6).retry_after == 10
    clock.advance(3.5)
    assert rl.hit("k", 6).retry_after == 7  # 6.5 s left, rounded up
    clock.advance(6.4)
    assert rl.hit("k", 6).retry_after == 1  # never 0 while refused
    clock.advance(0.1)
    assert rl.hit("k", 6).allowed


def test_burst_sets_the_bucket_size_not_the_rate(clock: Clock) -> None:
    rl = limiter(clock)
    assert drain(rl, "k", 60, burst=120) == 120
    d = rl.hit("k", 60, burst=120)
    assert d.limit == 60 and d.retry_after == 1  # refills at 60 a minute whatever the burst
    clock.advance(5)
    assert drain(rl, "k", 60, burst=120) == 5
    # a burst smaller than the rate caps what may come at once
    assert drain(rl, "small", 600, burst=3) == 3


def test_buckets_are_separate(clock: Clock) -> None:
    rl = limiter(clock)
    assert drain(rl, "key:1", 5) == 5
    assert rl.hit("key:2", 5).remaining == 4
    assert rl.hit("anon:127.0.0.1", 5).allowed
    assert not rl.hit("key:1", 5).allowed


def test_memory_is_bounded_and_a_forgotten_bucket_comes_back_full(clock: Clock) -> None:
    rl = limiter(clock, max_tracked=3)
    for name in ("a", "b", "c"):
        drain(rl, name, 10)
    rl.hit("a", 10)  # a is used again: b is now the least recently used
    rl.hit("d", 10)
    assert len(rl) == 3
    assert not rl.hit("a", 10).allowed and not rl.hit("c", 10).allowed  # still remembered (and empty)
    assert rl.hit("b", 10).remaining == 9  # forgotten: full again (only ever in the caller's favour)
    for i in range(10_000):
        rl.hit(f"anon:10.0.{i // 256}.{i % 256}", 10)
    assert len(rl) == 3


def test_a_limit_below_one_never_divides_by_zero(clock: Clock) -> None:
    rl = limiter(clock)
    d = rl.hit("k", 0)
    assert d.allowed and d.limit == 1
    assert rl.hit("k", 0).retry_after == 60


def test_headers() -> None:
    allowed = Decision(True, 1000, 999, 1_640_995_200, 0)
    assert allowed.headers() == [(b"x-ratelimit-limit", b"1000"), (b"x-ratelimit-remaining", b"999"),
                                 (b"x-ratelimit-reset", b"1640995200")]
    refused = Decision(False, 1000, 0, 1_640_995_260, 60)
    assert refused.headers() == [(b"x-ratelimit-limit", b"1000"), (b"x-ratelimit-remaining", b"0"),
                                 (b"x-ratelimit-reset", b"1640995260"), (b"x-ratelimit-retry-after", b"60")]


def test_error_is_seed_001s_429(clock: Clock) -> None:
    rl = limiter(clock)
    drain(rl, "k", 1000)
    refused = rl.hit("k", 1000)
    exc = refused.error()
    assert isinstance(exc, RateLimitExceeded)
    assert (exc.status, exc.code, exc.retry_after) == (429, "RATE_LIMIT_EXCEEDED", 1)
    reset_time = dt.datetime.fromtimestamp(WALL0 + 60, dt.timezone.utc).isoformat().replace("+00:00", "Z")
    assert exc.details == {"limit": 1000, "remaining": 0, "reset_time": reset_time, "retry_after": 1}
    assert reset_time == "2023-11-14T22:14:20Z"
    assert "1000 requests per minute" in exc.message
