"""Who is calling: API keys and access tokens resolved to a ``Principal``, from an in-memory directory.

The directory holds every account (role, status, permissions) and every live key's hash and scopes, so
authenticating a request costs no database query. Services that change an account or a key call
``Directory.refresh_account`` after committing, so a revoked, rotated or narrowed key, or a suspended account,
takes effect on the very next request (one controller process holds the directory; nothing is cached elsewhere).

Keys are 256-bit random strings stored as SHA-256 hashes: a slow KDF adds nothing for them. They are looked up
by hash in a dict; a timing difference there could only tell an attacker about the hash of a key they guessed,
which says nothing about any real key.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fnmatch
import hashlib
import ipaddress
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controller.errors import Forbidden, TokenInvalid, Unauthorized
from controller.models import Account, ApiKey, AuthSession, utcnow
from controller.permissions import OWNER_SCOPED_ROLES, Permission, Role, effective
from controller.tokens import ACCESS, TokenSigner

ADMIN_KEY_FILE = "admin.key"
ADMIN_PASSWORD_FILE = "admin.password"
KEY_PREFIX = "vpf_"
#: characters of a key shown in lists (``vpf_`` and 8 of its random characters)
SHOWN_PREFIX_LENGTH = 12
#: account statuses that may act (the others are refused everywhere)
ACTIVE = "active"

log = logging.getLogger("vpnfleet.auth")


def write_key_file(path: Path, key: str) -> None:
    """Write key to a new 0600 file: O_EXCL|O_NOFOLLOW, so neither a planted symlink nor an existing file is
    written through. A leftover file (from a database that was since removed) is unlinked first: its key is
    valid nowhere, and unlinking a symlink removes the link, never its target."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.path.lexists(path):
        log.warning("replacing %s: the database does not hold what that file says, so it is valid nowhere", path)
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A new API key: ``vpf_`` and 43 URL-safe characters (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    """Who made a request, and what they may do right now."""

    account_id: int
    username: str
    role: Role
    permissions: frozenset[Permission]
    #: set when the request came with an API key
    key_id: int | None = None
    key_name: str | None = None
    #: set when it came with an access token: the sign-in it belongs to
    session_id: str | None = None
    #: a key's own rate limit (requests per minute, burst), or None: the account's default
    rate_limit: tuple[int, int | None] | None = None
    #: signed in to an account an admin reset (force_change): only a new password may be set until it is
    must_change_password: bool = False

    @property
    def actor(self) -> str:
        """How the audit log names it: ``alice``, or ``alice (key monitoring)``."""
        return f"{self.username} (key {self.key_name})" if self.key_id is not None else self.username

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def owner_id(self) -> int | None:
        """The account whose things alone this principal reaches, or None: it reaches everything its
        permissions allow."""
        return self.account_id if self.role in OWNER_SCOPED_ROLES else None

    @property
    def rate_key(self) -> str:
        """What its requests are counted under: the key, else the account (every session of it together)."""
        return f"key:{self.key_id}" if self.key_id is not None else f"account:{self.account_id}"

    def may(self, permission: Permission) -> bool:
        return permission in self.permissions


@dataclass(frozen=True)
class AccountEntry:
    id: int
    username: str
    role: Role
    status: str
    permissions: tuple[str, ...] | None
    two_factor_enabled: bool
    must_change_password: bool = False

    def permitted(self) -> frozenset[Permission]:
        return effective(self.role, self.permissions)


@dataclass(frozen=True)
class KeyEntry:
    id: int
    name: str
    account_id: int
    access_level: str
    permissions: tuple[str, ...] | None
    allowed_ips: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None
    allowed_endpoints: tuple[str, ...] | None
    rate_limit: tuple[int, int | None] | None
    expires_at: dt.datetime | None

    @classmethod
    def of(cls, row: ApiKey) -> KeyEntry:
        ips = tuple(ipaddress.ip_network(c, strict=False) for c in row.allowed_ips) \
            if row.allowed_ips is not None else None
        rate = (row.rate_limit_per_minute, row.burst_limit) if row.rate_limit_per_minute else None
        return cls(row.id, row.name, row.account_id or 0, row.access_level,
                   tuple(row.permissions) if row.permissions is not None else None, ips,
                   tuple(row.allowed_endpoints) if row.allowed_endpoints is not None else None, rate,
                   row.expires_at)

    def allows_source(self, address: str | None) -> bool:
        if self.allowed_ips is None:
            return True
        try:
            ip = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self.allowed_ips)

    def allows_path(self, path: str) -> bool:
        """``/api/v1/wireguard/*`` matches everything below it; ``*`` never spans ``..`` tricks because the
        path is the router's (already decoded, no dot segments reach a route)."""
        if self.allowed_endpoints is None:
            return True
        return any(fnmatch.fnmatchcase(path, glob) or path == glob.rstrip("/*") for glob in self.allowed_endpoints)


@dataclass
class _Directory:
    accounts: dict[int, AccountEntry] = field(default_factory=dict)
    keys: dict[str, KeyEntry] = field(default_factory=dict)  # key hash -> entry


class Directory:
    """Every account and live key, in memory; resolves presented credentials to a ``Principal``."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], signer: TokenSigner) -> None:
        self._sessions = sessions
        self.signer = signer
        self._state = _Directory()
        #: sessions ended (logout, refresh-token reuse) whose access tokens may still be unexpired: id -> until
        self._revoked_sessions: dict[str, dt.datetime] = {}
        #: key id -> when it was last used, not yet written (flush_last_used)
        self._last_used: dict[int, dt.datetime] = {}
        self._lock = asyncio.Lock()

    # -- loading ----------------------------------------------------------------------------------------------
    async def load(self) -> None:
        async with self._sessions() as s:
            accounts = (await s.scalars(select(Account))).all()
            keys = (await s.scalars(select(ApiKey).where(ApiKey.revoked_at.is_(None)))).all()
            since = utcnow() - dt.timedelta(seconds=self.signer.access_ttl)
            revoked = (await s.execute(select(AuthSession.id, AuthSession.revoked_at)
                                       .where(AuthSession.revoked_at >= since))).all()
        state = _Directory({a.id: _account_entry(a) for a in accounts},
                           {k.key_hash: KeyEntry.of(k) for k in keys if k.account_id is not None})
        self._state = state
        ttl = dt.timedelta(seconds=self.signer.access_ttl)
        self._revoked_sessions = {sid: at + ttl for sid, at in revoked}

    async def refresh_account(self, account_id: int) -> None:
        """Reload one account and its keys (after a change to either was committed)."""
        async with self._lock:
            async with self._sessions() as s:
                account = await s.get(Account, account_id)
                keys = (await s.scalars(select(ApiKey).where(ApiKey.account_id == account_id,
                                                             ApiKey.revoked_at.is_(None)))).all()
            state = self._state
            accounts = dict(state.accounts)
            if account is None:
                accounts.pop(account_id, None)
            else:
                accounts[account_id] = _account_entry(account)
            by_hash = {h: k for h, k in state.keys.items() if k.account_id != account_id}
            if account is not None:
                by_hash.update({k.key_hash: KeyEntry.of(k) for k in keys})
            self._state = _Directory(accounts, by_hash)  # swapped whole: a request sees one or the other

    def revoke_session(self, session_id: str) -> None:
        """End a session's access tokens now (its refresh tokens are revoked in the database by the caller)."""
        now = utcnow()
        self._revoked_sessions = {sid: until for sid, until in self._revoked_sessions.items() if until > now}
        self._revoked_sessions[session_id] = now + dt.timedelta(seconds=self.signer.access_ttl)

    def account(self, account_id: int) -> AccountEntry | None:
        return self._state.accounts.get(account_id)

    # -- authenticating ---------------------------------------------------------------------------------------
    def authenticate_key(self, presented: str) -> KeyEntry | None:
        """The live key ``presented`` is, or None (unknown, revoked, or its account gone)."""
        entry = self._state.keys.get(hash_key(presented))
        if entry is None or entry.account_id not in self._state.accounts:
            return None
        return entry

    def key_principal(self, entry: KeyEntry, source: str | None, path: str) -> Principal:
        """The principal of a valid key used from ``source`` on ``path``; Unauthorized when it expired or its
        account may not act, Forbidden when its scopes exclude this address or path."""
        account = self._state.accounts[entry.account_id]
        if entry.expires_at is not None and entry.expires_at <= utcnow():
            raise Unauthorized("API key expired")
        if account.status != ACTIVE:
            raise Unauthorized(f"the key's account is {account.status}")
        if not entry.allows_source(source):
            raise Forbidden("this API key may not be used from this address")
        if not entry.allows_path(path):
            raise Forbidden("this API key may not call this path", {"path": path})
        self._last_used[entry.id] = utcnow()
        permissions = effective(account.role, account.permissions, entry.permissions, entry.access_level)
        return Principal(account.id, account.username, account.role, permissions, key_id=entry.id,
                         key_name=entry.name, rate_limit=entry.rate_limit)

    def token_principal(self, token: str, expected_types: tuple[str, ...] = (ACCESS,)) -> Principal:
        """The principal of a valid access token; TokenExpired/TokenInvalid otherwise (a token of a session
        that ended, or of an account that is gone or not active, is invalid)."""
        claims = self.signer.verify(token, expected_types)
        until = self._revoked_sessions.get(claims.session_id)
        if until is not None and until > utcnow():
            raise TokenInvalid("token revoked (its session ended)")
        account = self._state.accounts.get(claims.account_id)
        if account is None or account.status != ACTIVE:
            raise TokenInvalid("token of an account that may not sign in")
        return Principal(account.id, account.username, account.role, account.permitted(),
                         session_id=claims.session_id, must_change_password=account.must_change_password)

    async def flush_last_used(self) -> None:
        """Write keys' last-used times (batched: a busy key costs one UPDATE a minute, not one a request)."""
        pending, self._last_used = self._last_used, {}
        if not pending:
            return
        async with self._sessions() as s:
            for key_id, at in pending.items():
                await s.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used=at))
            await s.commit()

    async def run_last_used_flush(self, period: float = 60.0) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                await self.flush_last_used()
            except Exception:
                log.exception("recording API keys' last use failed")

    def last_used(self, key_id: int) -> dt.datetime | None:
        """A use not yet written (newer than the database's ``last_used``), or None."""
        return self._last_used.get(key_id)


def _account_entry(a: Account) -> AccountEntry:
    return AccountEntry(a.id, a.username, Role(a.role), a.status,
                        tuple(a.permissions) if a.permissions is not None else None, a.two_factor_enabled,
                        a.must_change_password)


@dataclass(frozen=True)
class FirstStart:
    """What the first start made, in plaintext exactly once (then only the 0600 files have it)."""

    admin_key: str | None = None
    admin_password: str | None = None
    #: the admin account has no password yet (upgraded from before accounts): how to set one
    password_unset: bool = False


async def bootstrap_admin(sessions: async_sessionmaker[AsyncSession], data_dir: Path,
                          hash_password: Callable[[str], Awaitable[str]]) -> FirstStart:
    """On the first start, the ``admin`` account, a password for it and its key. Each file is written before its
    hash is committed, so a failed start never leaves a credential nobody has."""
    async with sessions() as s:
        admin = await s.scalar(select(Account).where(Account.role == Role.ADMIN.value).order_by(Account.id).limit(1))
        if admin is not None:
            return FirstStart(password_unset=admin.password_hash is None)
        if await s.scalar(select(ApiKey.id).limit(1)) is not None:
            raise RuntimeError("API keys exist but no admin account: run the migrations (they make it)")
        key, password = new_key(), secrets.token_urlsafe(18)
        key_path, password_path = data_dir / ADMIN_KEY_FILE, data_dir / ADMIN_PASSWORD_FILE
        write_key_file(key_path, key)
        write_key_file(password_path, password)
        try:
            account = Account(username="admin", username_lower="admin", full_name="Administrator",
                              role=Role.ADMIN.value, status=ACTIVE, password_hash=await hash_password(password))
            s.add(account)
            await s.flush()
            s.add(ApiKey(name="admin", key_hash=hash_key(key), is_admin=True, account_id=account.id,
                         prefix=key[:SHOWN_PREFIX_LENGTH], description="made at first start"))
            await s.commit()
        except BaseException:
            key_path.unlink(missing_ok=True)
            password_path.unlink(missing_ok=True)
            raise
    return FirstStart(admin_key=key, admin_password=password)

