"""Accounts (seed 001's /api/v1/users): create, change, delete, reset passwords; no privilege escalation.

Who may change whom (each refusal a 403 INSUFFICIENT_PERMISSIONS, with nothing changed):
- nobody changes their own role, status or permissions (nor switches their own 2FA off here);
- only an admin creates, changes or deletes an admin account, or makes an account an admin;
- the last active admin cannot be deleted, suspended or demoted (409: the fleet would have nobody to run it).

An account's permissions are a subset of its role's defaults ("narrowed, never widened"; 422 otherwise).
Every committed change is followed by ``Directory.refresh_account``, so a suspended account's keys and tokens
stop on the next request; suspending or deleting an account also ends its sign-ins.
"""

from __future__ import annotations

import logging
from typing import Iterable

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controller.auth import ACTIVE, Directory, Principal
from controller.db import fetch_page
from controller.errors import AlreadyExists, Conflict, Forbidden, NotFound, ValidationFailed
from controller.models import Account, AuthSession, RecoveryCode, utcnow
from controller.notifier import Notifier
from controller.passwords import Passwords
from controller.permissions import ALL, ROLE_PERMISSIONS, Role, parse
from controller.schemas.users import AccountBody, AccountQuery, AccountUpdate, ResetPasswordBody
from controller.settings import Settings

log = logging.getLogger("vpnfleet.accounts")

_SORT = {"username": Account.username_lower, "email": Account.email, "created_at": Account.created_at,
         "last_login": Account.last_login}


class AccountService:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], passwords: Passwords,
                 directory: Directory, notifier: Notifier | None = None) -> None:
        self.settings = settings
        self._sessions = sessions
        self.passwords = passwords
        self.directory = directory
        #: welcome and password-reset notices (None: accepted, not sent; logged)
        self.notifier = notifier

    # -- reading ------------------------------------------------------------------------------------------------
    async def list(self, q: AccountQuery) -> tuple[list[Account], int]:
        query = select(Account)
        if q.search:
            query = query.where(or_(Account.username.icontains(q.search, autoescape=True),
                                    Account.email.icontains(q.search, autoescape=True)))
        if q.role:
            query = query.where(Account.role == q.role)
        if q.status:
            query = query.where(Account.status == q.status)
        column = _SORT[q.sort]
        # accounts without an email or a login sort last either way (NULLs differ between SQLite and PostgreSQL)
        order = (column.is_(None), column.desc() if q.order == "desc" else column.asc(), Account.id)
        async with self._sessions() as s:
            return await fetch_page(s, query, order, q.page, q.size)

    async def get(self, account_id: int) -> Account:
        async with self._sessions() as s:
            return await _get(s, account_id)

    # -- changes --------------------------------------------------------------------------------------------
    async def create(self, new: AccountBody, by: Principal) -> Account:
        role = Role(new.role)
        if role is Role.ADMIN and not by.is_admin:
            raise _only_admins("create an admin account")
        if new.two_factor_enabled:
            raise ValidationFailed("two_factor_enabled: an account enrols 2FA itself (POST /api/v1/auth/2fa/setup)",
                                   {"two_factor_enabled": "read-only: the account enrols itself"})
        permissions = _narrowed(role, new.permissions)
        self.passwords.check_policy(new.password, new.username)
        password_hash = await self.passwords.hash(new.password)
        async with self._sessions() as s:
            await self._check_unique(s, new.username, new.email)
            account = Account(username=new.username, username_lower=new.username.lower(), email=new.email,
                              full_name=new.full_name, role=role.value, status=new.status, permissions=permissions,
                              password_hash=password_hash, email_verified=False, two_factor_enabled=False)
            s.add(account)
            try:
                await s.flush()
            except IntegrityError:  # a concurrent create took the name or the address first
                raise _taken("username or email", f"{new.username} / {new.email}") from None
            await s.commit()
        await self.directory.refresh_account(account.id)
        log.info("account %s (%s) created by %s", account.username, account.role, by.actor)
        if new.send_welcome_email and account.email:
            await self._notify(account, "Your vpnfleet account",
                               f"An account named {account.username} was made for you on vpnfleet "
                               f"({self.settings.http_url}). Sign in with the password you were given.")
        return account

    async def update(self, account_id: int, edit: AccountUpdate, by: Principal) -> Account:
        """PUT/PATCH: only the fields given change."""
        given = edit.model_fields_set
        ended: list[str] = []
        async with self._sessions() as s:
            account = await _get(s, account_id)
            before_role, before_status = Role(account.role), account.status
            role = Role(edit.role) if "role" in given else before_role
            status = edit.status if "status" in given else before_status
            if account.id == by.account_id:
                self._refuse_self_changes(account, edit, given)
            if (before_role is Role.ADMIN or role is Role.ADMIN) and not by.is_admin:
                raise _only_admins("change an admin account or make one")
            if "two_factor_enabled" in given and edit.two_factor_enabled:
                raise ValidationFailed("two_factor_enabled: an account enrols 2FA itself "
                                       "(POST /api/v1/auth/2fa/setup)", {"two_factor_enabled": "only false here"})
            if "permissions" in given:
                account.permissions = _narrowed(role, edit.permissions)
            elif role is not before_role:
                account.permissions = None  # a new role, its defaults (documented on AccountUpdate)
            if before_role is Role.ADMIN and before_status == ACTIVE and (role is not Role.ADMIN or status != ACTIVE):
                await _keep_an_admin(s, account.id, "demoted or switched off")
            username = edit.username if "username" in given else account.username
            email = edit.email if "email" in given else account.email
            await self._check_unique(s, username if username.lower() != account.username_lower else None,
                                     email if _lower(email) != _lower(account.email) else None, besides=account.id)
            account.username, account.username_lower, account.email = username, username.lower(), email
            if "full_name" in given:
                account.full_name = edit.full_name
            account.role, account.status = role.value, status
            if "two_factor_enabled" in given and not edit.two_factor_enabled and account.two_factor_enabled:
                account.two_factor_enabled, account.totp_secret, account.totp_last_step = False, None, None
                await s.execute(RecoveryCode.__table__.delete().where(RecoveryCode.account_id == account.id))
            if status != ACTIVE and before_status == ACTIVE:
                ended = await _end_sign_ins(s, account.id, "account_changed")
            try:
                await s.flush()
            except IntegrityError:
                raise _taken("username or email", f"{username} / {email}") from None
            await s.commit()
        await self._after(account.id, ended)
        log.info("account %s changed by %s (%s)", account.username, by.actor, ", ".join(sorted(given)) or "nothing")
        return account

    async def delete(self, account_id: int, by: Principal) -> None:
        """Its keys, sign-ins and codes go with it; subscribers and peers it owned stay, owned by nobody."""
        async with self._sessions() as s:
            account = await _get(s, account_id)
            if account.id == by.account_id:
                raise Forbidden("nobody deletes their own account here", {"required": "another account"})
            if Role(account.role) is Role.ADMIN:
                if not by.is_admin:
                    raise _only_admins("delete an admin account")
                if account.status == ACTIVE:
                    await _keep_an_admin(s, account.id, "deleted")
            ended = await _end_sign_ins(s, account.id, "admin")
            await s.delete(account)
            await s.commit()
        await self._after(account_id, ended)
        log.info("account %s deleted by %s", account.username, by.actor)

    async def reset_password(self, account_id: int, body: ResetPasswordBody, by: Principal) -> Account:
        """A new password set by an administrator: the account's sign-ins end (whoever held them no longer
        knows the password) and any lockout is lifted."""
        async with self._sessions() as s:
            account = await _get(s, account_id)
            if Role(account.role) is Role.ADMIN and not by.is_admin:
                raise _only_admins("reset an admin's password")
        self.passwords.check_policy(body.new_password, account.username, field="new_password")
        password_hash = await self.passwords.hash(body.new_password)
        async with self._sessions() as s:
            account = await _get(s, account_id)
            account.password_hash = password_hash
            account.must_change_password = body.force_change
            account.login_attempts, account.locked_until = 0, None
            # one's own reset keeps the sign-in it was made from
            ended = await _end_sign_ins(s, account.id, "password_changed",
                                        keep=by.session_id if account.id == by.account_id else None)
            await s.commit()
        await self._after(account.id, ended)
        log.info("password of account %s reset by %s", account.username, by.actor)
        if body.send_email and account.email:
            await self._notify(account, "Your vpnfleet password was reset",
                               f"An administrator set a new password for the vpnfleet account {account.username}."
                               + (" You will be asked to choose your own at the next sign-in."
                                  if body.force_change else ""))
        return account

    # -- helpers ----------------------------------------------------------------------------------------------
    @staticmethod
    def _refuse_self_changes(account: Account, edit: AccountUpdate, given: set[str]) -> None:
        try:
            same_permissions = _stored(Role(account.role), edit.permissions) == account.permissions
        except ValueError:  # unknown or beyond the role: certainly a change
            same_permissions = False
        changes = {"role": "role" in given and edit.role != account.role,
                   "status": "status" in given and edit.status != account.status,
                   "permissions": "permissions" in given and not same_permissions,
                   "two_factor_enabled": "two_factor_enabled" in given
                   and edit.two_factor_enabled != account.two_factor_enabled}
        changed = [name for name, yes in changes.items() if yes]
        if changed:
            raise Forbidden(f"nobody changes their own {', '.join(changed)}", {"fields": changed})

    async def _check_unique(self, s: AsyncSession, username: str | None, email: str | None,
                            besides: int | None = None) -> None:
        """409 when another account has this username or email (in any case)."""
        others = select(Account.id).where(Account.id != besides) if besides else select(Account.id)
        if username is not None and await s.scalar(others.where(Account.username_lower == username.lower())):
            raise _taken("username", username)
        if email is not None and await s.scalar(others.where(func.lower(Account.email) == email.lower())):
            raise _taken("email", email)

    async def _after(self, account_id: int, ended: Iterable[str]) -> None:
        await self.directory.refresh_account(account_id)
        for sid in ended:
            self.directory.revoke_session(sid)

    async def _notify(self, account: Account, subject: str, body: str) -> None:
        """A notice is a courtesy: the change is committed whether or not it is delivered."""
        if self.notifier is None or not account.email:
            log.info("no notifier: not telling account %s %r", account.username, subject)
            return
        try:
            await self.notifier.send(account.email, subject, body)
        except Exception as exc:  # noqa: BLE001 - delivery failing must not undo the committed change
            log.warning("could not tell account %s %r: %s", account.username, subject, exc)


async def _get(s: AsyncSession, account_id: int) -> Account:
    account = await s.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} not found")
    return account


async def _keep_an_admin(s: AsyncSession, account_id: int, what: str) -> None:
    """409 unless another active admin remains. The active admins' rows are locked (PostgreSQL; SQLite
    serialises writers anyway), so two admins demoting each other at once cannot both succeed."""
    admins = (await s.scalars(select(Account.id).where(Account.role == Role.ADMIN.value, Account.status == ACTIVE)
                              .with_for_update())).all()
    if not set(admins) - {account_id}:
        raise Conflict(f"the last active admin cannot be {what}", {"role": "the last active admin"})


async def _end_sign_ins(s: AsyncSession, account_id: int, reason: str, keep: str | None = None) -> list[str]:
    """Revoke the account's live sign-ins (but ``keep``) in the database; their ids, for the directory after
    the commit."""
    ids = [sid for sid in (await s.scalars(select(AuthSession.id).where(
        AuthSession.account_id == account_id, AuthSession.revoked_at.is_(None)))).all() if sid != keep]
    if ids:
        await s.execute(update(AuthSession).where(AuthSession.id.in_(ids))
                        .values(revoked_at=utcnow(), revoked_reason=reason))
    return ids


def _narrowed(role: Role, names: list[str] | None) -> list[str] | None:
    """The permissions to store for ``role``: None (its defaults) or a sorted subset of them; 422 naming the
    field for an unknown name or one beyond the role."""
    try:
        return _stored(role, names)
    except ValueError as exc:
        raise ValidationFailed(f"permissions: {exc}", {"permissions": str(exc)}) from None


def _stored(role: Role, names: list[str] | None) -> list[str] | None:
    if names is None:
        return None
    wanted = parse(names)
    defaults = ROLE_PERMISSIONS[role]
    beyond = sorted(wanted - defaults)
    if beyond:
        raise ValueError(f"{', '.join(beyond)} not in the {role.value} role's set (an account is narrowed, "
                         f"never widened)")
    return None if wanted == ALL else sorted(p.value for p in wanted)


def _lower(value: str | None) -> str | None:
    return value.lower() if value is not None else None


def _taken(field: str, value: str) -> AlreadyExists:
    return AlreadyExists(f"an account with this {field} already exists: {value}", {field: "already taken"})


def _only_admins(what: str) -> Forbidden:
    return Forbidden(f"only an admin may {what}", {"required": "role admin"})
