import random

import pytest

from agent.backoff import Backoff, jittered


class MaxRandom(random.Random):
    """Always picks the top of the range, so the ceilings become visible."""

    def uniform(self, a: float, b: float) -> float:
        return b


class MinRandom(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return a


def test_ceiling_doubles_until_the_cap():
    backoff = Backoff(base=0.5, cap=30.0, rng=MaxRandom())
    delays = [backoff.next_delay() for _ in range(9)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_full_jitter_can_go_down_to_zero():
    backoff = Backoff(rng=MinRandom())
    assert [backoff.next_delay() for _ in range(5)] == [0.0] * 5


def test_delays_stay_within_the_window_with_a_real_rng():
    backoff = Backoff(base=0.5, cap=30.0, rng=random.Random(42))
    for attempt in range(50):
        ceiling = min(30.0, 0.5 * 2**attempt)
        assert 0.0 <= backoff.next_delay() <= ceiling


def test_reset_and_healthy_session():
    backoff = Backoff(base=0.5, cap=30.0, healthy_after=30.0, rng=MaxRandom())
    for _ in range(4):
        backoff.next_delay()
    backoff.session_ended(5.0)  # short-lived stream: keep backing off
    assert backoff.next_delay() == 8.0
    backoff.session_ended(31.0)  # healthy stream: start over
    assert backoff.attempt == 0
    assert backoff.next_delay() == 0.5


def test_very_many_attempts_do_not_overflow():
    backoff = Backoff(rng=MaxRandom())
    for _ in range(10_000):
        backoff.next_delay()
    assert backoff.next_delay() == 30.0


@pytest.mark.parametrize("seed", range(5))
def test_jittered_is_within_twenty_percent(seed):
    rng = random.Random(seed)
    for _ in range(100):
        assert 8.0 <= jittered(10.0, rng) <= 12.0
