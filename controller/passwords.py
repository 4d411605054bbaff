"""Passwords: Argon2id hashes (argon2-cffi), the password policy, and a check that costs the same whether or not
the account exists.

Argon2 is deliberately slow (a quarter of a second and 64 MiB per check at the defaults), so checks run in a
worker thread: the event loop keeps serving while a login is verified. And they are bounded: at most
``max_concurrent`` run at once and ``max_waiting`` wait; beyond that a sign-in is refused at once (429) rather
than queued, so a flood of logins (from however many addresses) costs at most those cores and that memory.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, TypeVar

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from controller.errors import TooManyRequests, ValidationFailed

T = TypeVar("T")

#: longest password accepted: Argon2 takes any length, but hashing megabytes per login is a denial of service
MAX_PASSWORD_LENGTH = 256


class Passwords:
    """Hashes and checks passwords with one set of Argon2id parameters (``auth.argon2_*``)."""

    def __init__(self, time_cost: int = 3, memory_kib: int = 64 * 1024, parallelism: int = 4,
                 min_length: int = 12, max_concurrent: int = 2, max_waiting: int = 64) -> None:
        self._slots = asyncio.Semaphore(max_concurrent)
        self._waiting = 0
        self.max_waiting = max_waiting
        self._hasher = argon2.PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism,
                                             type=argon2.Type.ID)
        self.min_length = min_length
        #: what a check of an unknown account (or one without a password) verifies against: same cost
        self._dummy = self._hasher.hash("no account has this password: it only makes the check take as long")

    async def hash(self, password: str) -> str:
        return await self._bounded(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        """True when ``password`` matches ``stored``. With ``stored`` None (no such account, or no password)
        the same work is done and the answer is False, so timing does not tell which it was."""
        return await self._bounded(self._verify, stored, password)

    async def _bounded(self, work: Callable[..., T], *args: Any) -> T:
        if self._waiting >= self.max_waiting:
            raise TooManyRequests("too many passwords being checked at once; retry in a second", 1,
                                  {"retry_after": 1})
        self._waiting += 1
        try:
            async with self._slots:
                return await asyncio.to_thread(work, *args)
        finally:
            self._waiting -= 1

    def _verify(self, stored: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        """The stored hash was made with other parameters (they were raised since): rehash at the next login."""
        try:
            return self._hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True

    def check_policy(self, password: str, username: str = "", field: str = "password") -> None:
        """The password policy, as a 422 naming ``field`` and every rule the password breaks."""
        problems = policy_problems(password, username, self.min_length)
        if problems:
            raise ValidationFailed(f"{field}: " + "; ".join(problems), {field: "; ".join(problems)})


def policy_problems(password: str, username: str, min_length: int) -> list[str]:
    """What is wrong with a new password (empty: nothing). Length matters most (NIST SP 800-63B); beyond it only
    the obvious: not the username, not a single repeated character, at least two kinds of character."""
    problems = []
    if len(password) < min_length:
        problems.append(f"must be at least {min_length} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(f"must be at most {MAX_PASSWORD_LENGTH} characters")
    if username and username.lower() in password.lower():
        problems.append("must not contain the username")
    if password and len(set(password)) == 1:
        problems.append("must not be one character repeated")
    kinds = sum((any(c.islower() for c in password), any(c.isupper() for c in password),
                 any(c.isdigit() for c in password), any(not c.isalnum() for c in password)))
    if kinds < 2:
        problems.append("must mix at least two of: lower case, upper case, digits, symbols")
    return problems
