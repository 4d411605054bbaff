"""Operator API keys: generated once, stored as SHA-256 hashes, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controller.models import ApiKey

ADMIN_KEY_FILE = "admin.key"
KEY_PREFIX = "vpf_"

log = logging.getLogger("vpnfleet.auth")


def write_key_file(path: Path, key: str) -> None:
    """Write key to a new 0600 file: O_EXCL|O_NOFOLLOW, so neither a planted symlink nor an existing file is
    written through. A leftover file (from a database that was since removed) is unlinked first: its key is
    valid nowhere, and unlinking a symlink removes the link, never its target."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.path.lexists(path):
        log.warning("replacing %s: the database has no admin key, so the key in that file is valid nowhere", path)
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")


def hash_key(key: str) -> str:
    """Keys are 256-bit random strings, so a plain SHA-256 is the right hash (no need for a slow KDF)."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who made a request."""

    name: str
    is_admin: bool


class ApiKeyStore:
    """Keeps the non-revoked key hashes in memory so authenticating a request costs no database query."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._keys: list[tuple[str, Principal]] = []

    async def load(self) -> None:
        async with self._sessions() as s:
            rows = (await s.scalars(select(ApiKey).where(ApiKey.revoked_at.is_(None)))).all()
        self._keys = [(row.key_hash, Principal(row.name, row.is_admin)) for row in rows]

    async def ensure_admin_key(self, data_dir: Path) -> str | None:
        """Create the admin key on first start. Returns the plaintext exactly once (then only the file has it).

        The file is written before the hash is committed, so a failed start never leaves a key nobody has."""
        async with self._sessions() as s:
            if await s.scalar(select(ApiKey.id).where(ApiKey.is_admin.is_(True)).limit(1)) is not None:
                await self.load()
                return None
            key = KEY_PREFIX + secrets.token_urlsafe(32)
            path = data_dir / ADMIN_KEY_FILE
            write_key_file(path, key)
            try:
                s.add(ApiKey(name="admin", key_hash=hash_key(key), is_admin=True))
                await s.commit()
            except BaseException:
                path.unlink(missing_ok=True)
                raise
        await self.load()
        return key

    def authenticate(self, presented: str) -> Principal | None:
        """Compare against every key in constant time, so timing tells nothing about which key is close."""
        digest = hash_key(presented)
        found: Principal | None = None
        for key_hash, principal in self._keys:
            if hmac.compare_digest(digest, key_hash):
                found = principal
        return found
