"""Passwords (controller.passwords): Argon2id hashes, the same work for unknown accounts, the policy's 422s."""

from __future__ import annotations

import asyncio
import time

import pytest

from controller.errors import ValidationFailed
from controller.passwords import Passwords, policy_problems


@pytest.fixture(scope="module")
def passwords() -> Passwords:
    return Passwords(time_cost=1, memory_kib=8192, parallelism=1, min_length=12)


def test_hash_and_verify(passwords: Passwords) -> None:
    digest = asyncio.run(passwords.hash("correct horse battery"))
    assert digest.startswith("$argon2id$") and "correct horse" not in digest
    assert asyncio.run(passwords.verify(digest, "correct horse battery"))
    assert not asyncio.run(passwords.verify(digest, "correct horse batterY"))
    assert not asyncio.run(passwords.verify("not a hash", "x"))


def test_unknown_account_costs_the_same(passwords: Passwords) -> None:
    digest = asyncio.run(passwords.hash("correct horse battery"))

    def timed(stored: str | None) -> float:
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            assert not asyncio.run(passwords.verify(stored, "wrong password 1"))
            best = min(best, time.perf_counter() - start)
        return best

    known, unknown = timed(digest), timed(None)
    assert 0.5 < unknown / known < 2.0, (known, unknown)


def test_needs_rehash_when_parameters_rise(passwords: Passwords) -> None:
    digest = asyncio.run(passwords.hash("correct horse battery"))
    assert not passwords.needs_rehash(digest)
    stronger = Passwords(time_cost=2, memory_kib=8192, parallelism=1)
    assert stronger.needs_rehash(digest)
    assert stronger.needs_rehash("garbage")


@pytest.mark.parametrize("password, problem", [
    ("Short1", "at least 12"), ("aaaaaaaaaaaaaaaa", "one character repeated"),
    ("alllowercaseletters", "two of"), ("Alice-is-my-password1", "username"), ("x" * 257 + "A", "at most 256")])
def test_policy(passwords: Passwords, password: str, problem: str) -> None:
    assert any(problem in p for p in policy_problems(password, "alice", 12))
    with pytest.raises(ValidationFailed) as err:
        passwords.check_policy(password, "alice", field="new_password")
    assert err.value.details and "new_password" in err.value.details and err.value.message.startswith("new_password")


def test_policy_accepts_a_good_password(passwords: Passwords) -> None:
    passwords.check_policy("correct horse battery 9", "alice")


async def test_checks_are_bounded_and_a_flood_is_refused_not_queued() -> None:
    """At most max_concurrent Argon2 checks run at once; beyond max_waiting callers a check is a 429 at once."""
    import asyncio

    from controller.errors import TooManyRequests
    from controller.passwords import Passwords

    pw = Passwords(time_cost=1, memory_kib=8 * 1024, max_concurrent=1, max_waiting=3)
    stored = await pw.hash("Correct-Horse-9-battery")
    results = await asyncio.gather(*(pw.verify(stored, "Correct-Horse-9-battery") for _ in range(8)),
                                   return_exceptions=True)
    refused = [r for r in results if isinstance(r, TooManyRequests)]
    assert results.count(True) == 3 and len(refused) == 5 and refused[0].retry_after == 1
    assert await pw.verify(stored, "Correct-Horse-9-battery") is True  # the slots were all given back
