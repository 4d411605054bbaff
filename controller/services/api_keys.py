"""Scoped API keys (seed 001's /api/v1/auth/api-keys): create (shown once), list, revoke, rotate.

A key never exceeds its account: its permissions are within the account's, and within the caller's. A key that
acts on keys (a caller using a key rather than a sign-in) only makes, rotates or revokes keys no stronger than
itself: permissions within its own, addresses within its own, paths within its own, expiring no later, limited
no higher. Rotating answers a key's secret, so it is held to the same rule as creating one.

Only SHA-256 hashes are stored; the key is in the answer to create and rotate, never in a log. Every change is
followed by ``Directory.refresh_account``: revoke and rotate take effect on the very next request.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controller.auth import SHOWN_PREFIX_LENGTH, Directory, Principal, hash_key, new_key
from controller.errors import AlreadyExists, Conflict, Forbidden, NotFound, ValidationFailed
from controller.models import Account, ApiKey, utcnow
from controller.permissions import Permission, effective, parse
from controller.schemas.api_keys import ApiKeyBody, ApiKeyQuery
from controller.settings import Settings

log = logging.getLogger("vpnfleet.api_keys")


@dataclass(frozen=True)
class Made:
    """A key just made or rotated: the row, and the key itself (to be shown once)."""

    row: ApiKey
    key: str


def key_status(row: ApiKey, now: dt.datetime | None = None) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= (now or utcnow()):
        return "expired"
    return "active"


class ApiKeyService:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], directory: Directory) -> None:
        self.settings = settings
        self._sessions = sessions
        self.directory = directory

    # -- reading ------------------------------------------------------------------------------------------------
    async def list(self, q: ApiKeyQuery, by: Principal) -> tuple[list[tuple[ApiKey, Account | None]], int]:
        """The caller's keys; every account's (or ``q.account_id``'s) with keys.manage_all."""
        query = select(ApiKey, Account).outerjoin(Account, ApiKey.account_id == Account.id)
        if not by.may(Permission.KEYS_MANAGE_ALL):
            if q.account_id not in (None, by.account_id):
                return [], 0  # another account's: none, as if it had none
            query = query.where(ApiKey.account_id == by.account_id)
        elif q.account_id is not None:
            query = query.where(ApiKey.account_id == q.account_id)
        now = utcnow()
        if q.status == "revoked":
            query = query.where(ApiKey.revoked_at.is_not(None))
        elif q.status == "expired":
            query = query.where(ApiKey.revoked_at.is_(None), ApiKey.expires_at <= now)
        elif q.status == "active":
            query = query.where(ApiKey.revoked_at.is_(None),
                                (ApiKey.expires_at.is_(None)) | (ApiKey.expires_at > now))
        async with self._sessions() as s:
            total = await s.scalar(select(func.count()).select_from(query.subquery()))
            rows = (await s.execute(query.order_by(ApiKey.id).offset((q.page - 1) * q.size).limit(q.size))).all()
        return [(k, a) for k, a in rows], int(total or 0)

    async def get(self, key_id: int, by: Principal) -> tuple[ApiKey, Account | None]:
        async with self._sessions() as s:
            row = await self._visible(s, key_id, by)
            return row, await s.get(Account, row.account_id) if row.account_id else None

    def last_used(self, row: ApiKey) -> dt.datetime | None:
        """The newer of the stored last use and one the directory has not written yet."""
        pending = self.directory.last_used(row.id)
        if pending is None or (row.last_used is not None and row.last_used >= pending):
            return row.last_used
        return pending

    # -- changes --------------------------------------------------------------------------------------------
    async def create(self, new: ApiKeyBody, by: Principal) -> tuple[Made, Account]:
        account_id = new.account_id or by.account_id
        if account_id != by.account_id and not by.may(Permission.KEYS_MANAGE_ALL):
            raise Forbidden("a key for another account needs the permission keys.manage_all",
                            {"required": Permission.KEYS_MANAGE_ALL.value})
        try:
            asked = parse(new.permissions) if new.permissions is not None else None
        except ValueError as exc:
            raise ValidationFailed(f"permissions: {exc}", {"permissions": str(exc)}) from None
        async with self._sessions() as s:
            account = await s.get(Account, account_id)
            if account is None:
                raise ValidationFailed(f"account_id: no account {account_id}", {"account_id": "no such account"})
            caller_key = await s.get(ApiKey, by.key_id) if by.key_id is not None else None
            granted = effective(account.role, account.permissions)
            if asked is None and caller_key is not None and account.id == by.account_id:
                # made with a key and no list: as narrow as that key (never "the account's", which is wider)
                permissions: list[str] | None = (None if by.permissions == granted
                                                 else sorted(p.value for p in by.permissions))
            else:
                # the account's, or as asked within them; never beyond the caller
                _within(granted if asked is None else asked, by.permissions, "the caller")
                if asked is not None:
                    _within(asked, granted, f"the account {account.username}")
                permissions = sorted(p.value for p in asked) if asked is not None else None
            row = ApiKey(name=new.name, account_id=account.id, access_level=new.access_level,
                         permissions=permissions, allowed_ips=new.allowed_ips, allowed_endpoints=new.allowed_endpoints,
                         rate_limit_per_minute=new.rate_limit.requests_per_minute if new.rate_limit else None,
                         burst_limit=new.rate_limit.burst_limit if new.rate_limit else None,
                         expires_at=new.expires_at, description=new.description, is_admin=False)
            if caller_key is not None:
                _inherit_scopes(row, caller_key)
            key = new_key()
            row.key_hash, row.prefix = hash_key(key), key[:SHOWN_PREFIX_LENGTH]
            await self._check_name(s, new.name)
            s.add(row)
            try:
                await s.flush()
            except IntegrityError:  # a concurrent create took the name first
                raise _name_taken(new.name) from None
            await s.commit()
        await self.directory.refresh_account(account.id)
        log.info("API key %s (id %d, prefix %s) made for %s by %s", row.name, row.id, row.prefix, account.username,
                 by.actor)
        return Made(row, key), account

    async def revoke(self, key_id: int, by: Principal) -> None:
        """Revoke the key (idempotent): it fails from the next request on."""
        async with self._sessions() as s:
            row = await self._visible(s, key_id, by)
            await self._acting_on(s, row, by)
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                await s.commit()
        if row.account_id is not None:
            await self.directory.refresh_account(row.account_id)
        log.info("API key %s (id %d) revoked by %s", row.name, row.id, by.actor)

    async def rotate(self, key_id: int, by: Principal) -> tuple[Made, Account | None]:
        """A new secret with the same scopes; the old one fails from the next request on."""
        async with self._sessions() as s:
            row = await self._visible(s, key_id, by)
            await self._acting_on(s, row, by)
            status = key_status(row)
            if status != "active":
                raise Conflict(f"an {status} key cannot be rotated", {"status": status})
            key = new_key()
            row.key_hash, row.prefix = hash_key(key), key[:SHOWN_PREFIX_LENGTH]
            await s.commit()
            account = await s.get(Account, row.account_id) if row.account_id else None
        if row.account_id is not None:
            await self.directory.refresh_account(row.account_id)
        log.info("API key %s (id %d, new prefix %s) rotated by %s", row.name, row.id, row.prefix, by.actor)
        return Made(row, key), account

    # -- helpers ----------------------------------------------------------------------------------------------
    @staticmethod
    async def _visible(s: AsyncSession, key_id: int, by: Principal) -> ApiKey:
        """The key when the caller may see it; others' keys are 404, as unknown ones."""
        row = await s.get(ApiKey, key_id)
        if row is None or (row.account_id != by.account_id and not by.may(Permission.KEYS_MANAGE_ALL)):
            raise NotFound(f"API key {key_id} not found")
        return row

    @staticmethod
    async def _acting_on(s: AsyncSession, row: ApiKey, by: Principal) -> None:
        """403 when the caller is a key weaker than ``row`` (rotating would hand it a stronger key's secret)."""
        account = await s.get(Account, row.account_id) if row.account_id else None
        if account is None:
            return
        target = effective(account.role, account.permissions, row.permissions, row.access_level)
        _within(target, by.permissions, "the caller")
        if by.key_id is not None and by.key_id != row.id:
            caller_key = await s.get(ApiKey, by.key_id)
            if caller_key is not None:
                _scopes_within(row, caller_key)

    @staticmethod
    async def _check_name(s: AsyncSession, name: str) -> None:
        if await s.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
            raise _name_taken(name)


def _within(wanted: frozenset[Permission], allowed: frozenset[Permission], whose: str) -> None:
    beyond = sorted(p.value for p in wanted - allowed)
    if beyond:
        raise Forbidden(f"a key cannot exceed {whose}: {', '.join(beyond)} not held",
                        {"required": beyond[0], "beyond": beyond})


def _inherit_scopes(row: ApiKey, caller: ApiKey) -> None:
    """A key made with a key: its unset scopes are the caller's; set ones must lie within the caller's."""
    if row.allowed_ips is None:
        row.allowed_ips = caller.allowed_ips
    if row.allowed_endpoints is None:
        row.allowed_endpoints = caller.allowed_endpoints
    if row.expires_at is None:
        row.expires_at = caller.expires_at
    if row.rate_limit_per_minute is None:
        row.rate_limit_per_minute, row.burst_limit = caller.rate_limit_per_minute, caller.burst_limit
    if caller.access_level == "read":
        row.access_level = "read"
    _scopes_within(row, caller)


def _scopes_within(row: ApiKey, caller: ApiKey) -> None:
    """403 unless every scope of ``row`` is within the caller key's."""
    if caller.access_level == "read" and row.access_level != "read":
        raise Forbidden("a read key acts only on read keys", {"required": "access_level read"})
    if caller.allowed_ips is not None:
        nets = [ipaddress.ip_network(c) for c in caller.allowed_ips]
        inside = row.allowed_ips is not None and all(
            any(n.version == c.version and n.subnet_of(c) for c in nets)  # type: ignore[arg-type]
            for n in (ipaddress.ip_network(x) for x in row.allowed_ips))
        if not inside:
            raise Forbidden("a key cannot reach addresses its maker cannot", {"allowed_ips": caller.allowed_ips})
    if caller.allowed_endpoints is not None:
        inside = row.allowed_endpoints is not None and all(
            any(_glob_within(g, c) for c in caller.allowed_endpoints) for g in row.allowed_endpoints)
        if not inside:
            raise Forbidden("a key cannot reach paths its maker cannot",
                            {"allowed_endpoints": caller.allowed_endpoints})
    if caller.expires_at is not None and (row.expires_at is None or row.expires_at > caller.expires_at):
        raise Forbidden("a key cannot outlive its maker", {"expires_at": caller.expires_at.isoformat()})
    if caller.rate_limit_per_minute is not None and (
            row.rate_limit_per_minute is None or row.rate_limit_per_minute > caller.rate_limit_per_minute):
        raise Forbidden("a key cannot be allowed more requests than its maker",
                        {"rate_limit": caller.rate_limit_per_minute})


_GLOB_CHARS = set("*?[]")


def _glob_within(glob: str, outer: str) -> bool:
    """Whether every path ``glob`` allows, ``outer`` allows too: conservatively, the same glob, or ``outer`` is a
    plain prefix ending in one ``*`` that ``glob`` starts with (``/a/*`` also allows ``/a``, as the directory
    matches it: controller.auth.KeyEntry.allows_path)."""
    if glob == outer:
        return True
    head = outer[:-1]
    if not outer.endswith("*") or _GLOB_CHARS & set(head):
        return False
    return glob.startswith(head) or glob == outer.rstrip("/*")


def _name_taken(name: str) -> AlreadyExists:
    return AlreadyExists(f"an API key named '{name}' already exists", {"name": "already taken"})

