"""The operations (audit) log: every mutating API call with actor, action, target, payload and result.

Payloads are recorded with every secret-shaped field redacted, rather than through an allow-list per action.
Why: a redacted copy keeps the whole shape of the call (what seed 004's operations log shows), needs no
second list of fields beside each route's model (a list that would drift as routes change), and the
secret-shaped names are few and broad (anything with key, token, secret, password, credential, ...), so a
new secret field is redacted without anyone remembering to. A value that is shaped like a secret (an API key,
a PEM private key) is redacted whatever its field is called, and every redacted value is also cut out of the
recorded error message. tests/e2e/test_audit.py checks every documented request body against it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controller.db import fetch_page
from controller.models import Operation

log = logging.getLogger("vpnfleet.operations")

REDACTED = "***"
#: a field whose name (lower case, "-" read as "_") holds one of these is a secret
SECRET_NAME = re.compile(r"key|token|secret|passw|passphrase|pwd|psk|credential|private|cookie|session"
                         r"|signature|auth|uuid|cert|(^|_)codes?$")  # codes: 2FA, recovery, emailed ones
#: secret-shaped names that are not secrets: a WireGuard peer's identity is its public key
PUBLIC_NAMES = frozenset({"public_key", "publickey"})
#: values that are secrets whatever field holds them: an API key, a PEM private key
SECRET_VALUE = re.compile(r"\bvpf_[A-Za-z0-9_-]{20,}|-----BEGIN [A-Z ]*PRIVATE KEY-----")
#: rows deleted per statement when pruning, so a big backlog never holds the database in one long write
PRUNE_BATCH = 5000


def is_secret_name(name: str) -> bool:
    lowered = name.lower().replace("-", "_")
    return lowered not in PUBLIC_NAMES and SECRET_NAME.search(lowered) is not None


def redact(payload: Any) -> tuple[Any, list[str]]:
    """A copy of ``payload`` with secret-shaped fields and values replaced by ``***``, and the secret strings
    found (to cut them out of other texts). Iterative: however deep the payload, no RecursionError."""
    found: list[str] = []

    def leaf(value: Any, secret: bool) -> Any:
        if secret and value is not None and not isinstance(value, bool):  # a flag (use_preshared_key) tells nothing
            if isinstance(value, str) and value:
                found.append(value)
            return REDACTED
        if isinstance(value, str) and SECRET_VALUE.search(value):
            found.append(value)
            return REDACTED
        return value

    root: list[Any] = [None]
    # (container the copy goes into, its index or key, the original value, under a secret name)
    stack: list[tuple[Any, Any, Any, bool]] = [(root, 0, payload, False)]
    while stack:
        into, slot, value, secret = stack.pop()
        if isinstance(value, dict):
            copy: dict[str, Any] = {}
            into[slot] = copy
            for k, v in value.items():
                copy[k] = None
                stack.append((copy, k, v, secret or is_secret_name(str(k))))
        elif isinstance(value, list):
            items: list[Any] = [None] * len(value)
            into[slot] = items
            stack.extend((items, i, v, secret) for i, v in enumerate(value))
        else:
            into[slot] = leaf(value, secret)
    return root[0], found


def scrub(text: str | None, secrets_: list[str]) -> str | None:
    """``text`` with each of ``secrets_`` (and any secret-shaped value) cut out."""
    if not text:
        return text
    for secret in sorted(set(secrets_), key=len, reverse=True):
        if len(secret) >= 4:  # shorter "secrets" (say "a") would shred the message and hide nothing
            text = text.replace(secret, REDACTED)
    return SECRET_VALUE.sub(REDACTED, text)


class OperationLog:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def record(self, *, actor: str, action: str, target_type: str | None, target_id: str | None,
                     payload: Any, status_code: int, error: str | None, request_id: str,
                     client_id: str | None = None) -> None:
        clean, found = redact(payload)
        async with self._sessions() as s:
            s.add(Operation(actor=actor, action=action, target_type=target_type, target_id=target_id,
                            client_id=client_id, payload=clean,
                            result="success" if status_code < 400 else "fail", status_code=status_code,
                            error=scrub(error, found), request_id=request_id))
            await s.commit()

    async def list(self, *, client_id: str | None = None, target_id: str | None = None, action: str | None = None,
                   actor: str | None = None, result: str | None = None, page: int = 1,
                   size: int = 50) -> tuple[list[Operation], int]:
        query = select(Operation)
        for column, value in ((Operation.client_id, client_id), (Operation.target_id, target_id),
                              (Operation.actor, actor), (Operation.result, result)):
            if value:
                query = query.where(column == value)
        if action:
            query = query.where(Operation.action.ilike(f"%{action}%"))
        async with self._sessions() as s:
            return await fetch_page(s, query, (Operation.created_at.desc(),), page, size)

    async def prune(self, retention_days: int, now: dt.datetime | None = None) -> int:
        """Delete operations older than ``retention_days`` (0 or less keeps everything); returns how many."""
        if retention_days <= 0:
            return 0
        cutoff = (now or dt.datetime.now(dt.timezone.utc)) - dt.timedelta(days=retention_days)
        deleted = 0
        while True:
            async with self._sessions() as s:
                ids = (await s.scalars(select(Operation.id).where(Operation.created_at < cutoff)
                                       .limit(PRUNE_BATCH))).all()
                if not ids:
                    return deleted
                await s.execute(delete(Operation).where(Operation.id.in_(ids)))
                await s.commit()
            deleted += len(ids)

    async def run_retention(self, retention_days: int, period: float = 3600.0) -> None:
        """The schedule: prune once at start, then every ``period`` seconds; a failure is logged and retried."""
        while True:
            try:
                if (n := await self.prune(retention_days)):
                    log.info("pruned %d operations older than %d days", n, retention_days)
            except Exception:
                log.exception("pruning the operations log failed")
            await asyncio.sleep(period)
