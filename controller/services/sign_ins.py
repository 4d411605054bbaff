"""Signing in: passwords, access and refresh tokens, 2FA, registration, verification and password resets.

Sessions. A completed sign-in is an ``AuthSession`` (the family) with one live refresh token at a time: opaque
(``vpr_`` + 256 random bits), stored as SHA-256, single use. Refreshing spends it and answers with a new one
and a new access token (a short JWT naming the session). A spent token presented again means a copy is in
someone else's hands: the whole family is revoked (``refresh_reuse``) and ``Directory.revoke_session`` ends its
unexpired access tokens at once, the thief's and the owner's alike. Logging out revokes the same way.

Lockout. ``auth.max_login_attempts`` wrong passwords (or second-factor codes) in a row lock the name for
``auth.lockout_seconds``: while locked, even the right password is refused, with **429 TOO_MANY_REQUESTS**
and ``retry_after`` (header and ``details``), and no password is checked. Names with no account are counted
the same way in a bounded in-memory map and do the same Argon2 work (``Passwords.verify(None, ...)``), so the
answers for an existing and an unknown name are the same, byte for byte but the request id. (That map is not
kept across restarts; the accounts' counts are.) Attempts on one name are serialised, so a burst of parallel
guesses cannot slip past the count.

Audit. Public routes have no principal, so the audit middleware records nothing for them; every sign-in
event is recorded here (``auth.login``, ``auth.verify_2fa``, ``auth.refresh_reuse``, ``auth.logout``,
``auth.password_changed``, ``auth.2fa_enabled``/``disabled``/``recovery_codes``, ``auth.register``,
``auth.verify``, ``auth.reset_request``, ``auth.reset_password``), never with a password, code or token.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import hmac
import logging
import math
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any, AsyncIterator

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controller import two_factor
from controller.auth import ACTIVE, Directory, Principal, hash_key
from controller.errors import (AlreadyExists, BadRequest, Conflict, Forbidden, TokenExpired, TokenInvalid,
                               TooManyRequests, Unauthorized, ValidationFailed)
from controller.models import Account, AccountCode, AuthSession, RecoveryCode, RefreshToken, utcnow
from controller.notifier import Notifier
from controller.passwords import Passwords, policy_problems
from controller.permissions import Role, as_list, effective
from controller.serializers import iso
from controller.services.operations import OperationLog
from controller.settings import Settings
from controller.tokens import MFA, SETUP, TokenSigner

log = logging.getLogger("vpnfleet.sign_in")

REFRESH_PREFIX = "vpr_"
#: seconds between a right password and its second factor
MFA_TTL = 300
#: seconds an account that must enrol 2FA has to do so after its password
SETUP_TTL = 600
#: wrong tries of one emailed code before it is spent
CODE_ATTEMPTS = 5
CODE_DIGITS = 8
#: seconds before another reset code is sent to the same account (asking again sooner sends nothing)
RESEND_AFTER = 60
VERIFY, RESET = "verify", "reset"
#: names without an account whose failures are remembered at once (least recently failing forgotten first)
MAX_UNKNOWN_NAMES = 10_000
#: what a wrong password says, whether or not the name exists
WRONG_CREDENTIALS = "invalid username or password"
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Caller:
    """Where a request came from: recorded with the session and in the audit log."""

    source: str = ""
    user_agent: str = ""
    request_id: str = ""


def user_to_dict(a: Account) -> dict[str, Any]:
    """The signed-in account as a login answer shows it (``UserOut``)."""
    return {"id": a.id, "username": a.username, "email": a.email, "role": a.role,
            "permissions": as_list(effective(a.role, a.permissions)), "two_factor_enabled": a.two_factor_enabled,
            "last_login": iso(a.last_login), "must_change_password": a.must_change_password}


def me_to_dict(a: Account) -> dict[str, Any]:
    return {**user_to_dict(a), "full_name": a.full_name, "status": a.status, "email_verified": a.email_verified}


class UnknownNames:
    """Failed sign-ins of names that have no account, counted like an account's (bounded, least recently
    failing forgotten first), so a locked answer does not tell an unknown name from a real one."""

    def __init__(self, max_tracked: int = MAX_UNKNOWN_NAMES) -> None:
        self.max_tracked = max_tracked
        self._entries: collections.OrderedDict[str, tuple[int, dt.datetime | None]] = collections.OrderedDict()

    def locked_until(self, name: str) -> dt.datetime | None:
        entry = self._entries.get(name)
        return entry[1] if entry else None

    def failed(self, name: str, limit: int, lockout: dt.timedelta, now: dt.datetime) -> None:
        attempts, until = self._entries.pop(name, (0, None))
        attempts += 1
        if attempts % limit == 0:
            until = now + lockout
        self._entries[name] = (attempts, until)
        while len(self._entries) > self.max_tracked:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def _challenge_id(remember_me: bool) -> str:
    """The ``sid`` of an mfa or setup token: random, and whether the sign-in asked to be remembered."""
    return f"{uuid.uuid4().hex}.{'r' if remember_me else 's'}"


def _new_refresh_token() -> str:
    return REFRESH_PREFIX + secrets.token_urlsafe(32)


def _code_hash(account_id: int, purpose: str, code: str) -> str:
    return hash_key(f"{account_id}:{purpose}:{code.strip()}")


def _wrong_code() -> ValidationFailed:
    return ValidationFailed("code: wrong, used or expired; request a new one",
                            {"code": "wrong, used or expired"})


class SignInService:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], passwords: Passwords,
                 signer: TokenSigner, directory: Directory, notifier: Notifier, operations: OperationLog) -> None:
        self.settings = settings
        self._sessions = sessions
        self.passwords = passwords
        self.signer = signer
        self.directory = directory
        self.notifier = notifier
        self.operations = operations
        self.unknown = UnknownNames()
        #: name -> (lock, waiters): one sign-in attempt per name at a time (entries go when nobody waits)
        self._name_locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}
        #: mfa/setup challenge ids already completed -> when their token expires (monotonic)
        self._spent: dict[str, float] = {}
        #: messages being sent after their request was answered (kept so they are not collected mid-send)
        self._background: set[asyncio.Task[None]] = set()

    # -- signing in ---------------------------------------------------------------------------------------------
    async def login(self, username: str, password: str, remember_me: bool, caller: Caller) -> dict[str, Any]:
        """A sign-in's first step: tokens, a second-factor challenge, or a 2FA enrolment that must come first."""
        name = username.strip().lower()
        payload = {"username": username[:64], "remember_me": remember_me, "source": caller.source}
        async with self._serialised(name):
            account = await self._by_name(name)
            account_id = account.id if account else None
            await self._refuse_locked(account, name, caller, "auth.login", payload)
            if not await self.passwords.verify(account.password_hash if account else None, password):
                await self._failed(account_id, name)
                await self._audit(caller, ANONYMOUS, "auth.login", 401, payload, WRONG_CREDENTIALS, account_id)
                raise Unauthorized(WRONG_CREDENTIALS)
        assert account is not None
        if account.status != ACTIVE:
            await self._audit(caller, account.username, "auth.login", 403, payload, f"account {account.status}",
                              account.id)
            raise Forbidden(f"this account is {account.status}" + (
                ": verify its email first (POST /api/v1/auth/verify)"
                if account.status == "inactive" and not account.email_verified else ""), {"status": account.status})
        if self.passwords.needs_rehash(account.password_hash or ""):
            await self._rehash(account.id, password)
        if account.two_factor_enabled:
            await self._audit(caller, account.username, "auth.login", 200, payload, None, account.id)
            token = self.signer.issue(account.id, _challenge_id(remember_me), MFA, MFA_TTL)
            return {"two_factor_required": True, "mfa_token": token, "expires_in": MFA_TTL,
                    "methods": ["totp", "recovery"]}
        if account.role in self.settings.require_two_factor_roles:
            await self._audit(caller, account.username, "auth.login", 200, {**payload, "setup_required": True},
                              None, account.id)
            token = self.signer.issue(account.id, _challenge_id(remember_me), SETUP, SETUP_TTL)
            return {"two_factor_setup_required": True, "setup_token": token, "expires_in": SETUP_TTL}
        answer = await self._complete(account.id, remember_me, caller)
        await self._audit(caller, account.username, "auth.login", 200, payload, None, account.id)
        return answer

    async def verify_second_factor(self, token: str, code: str, method: str, caller: Caller) -> dict[str, Any]:
        """A sign-in's second step: the mfa token from ``login`` and a TOTP or recovery code -> tokens."""
        claims = self.signer.verify(token, (MFA,))
        if self._is_spent(claims.session_id):
            raise TokenInvalid("this sign-in was already completed; sign in again")
        async with self._sessions() as s:
            account = await s.get(Account, claims.account_id)
        if account is None or account.status != ACTIVE:
            raise TokenInvalid("token of an account that may not sign in")
        if not account.two_factor_enabled:
            raise TokenInvalid("2FA is no longer on for this account; sign in again")
        payload = {"username": account.username, "method": method, "source": caller.source}
        async with self._serialised(account.username_lower):
            await self._refuse_locked(account, account.username_lower, caller, "auth.verify_2fa", payload)
            if not await self._second_factor(account.id, code, method):
                await self._failed(account.id, account.username_lower)
                await self._audit(caller, ANONYMOUS, "auth.verify_2fa", 401, payload, "wrong code", account.id)
                raise Unauthorized("wrong, used or expired code")
            self._spend(claims.session_id, claims.expires_at)
        answer = await self._complete(account.id, claims.session_id.endswith(".r"), caller)
        await self._audit(caller, account.username, "auth.verify_2fa", 200, payload, None, account.id)
        return answer

    async def refresh(self, token: str, caller: Caller) -> dict[str, Any]:
        """Spend a refresh token: a new access token and a new refresh token. A spent one revokes its family."""
        if not token.startswith(REFRESH_PREFIX):
            raise TokenInvalid("not a refresh token (they start with vpr_)")
        now = utcnow()
        async with self._sessions() as s:
            row = await s.scalar(select(RefreshToken).where(RefreshToken.token_hash == hash_key(token)))
            if row is None:
                raise TokenInvalid("unknown refresh token")
            session = await s.get(AuthSession, row.session_id)
            assert session is not None  # the foreign key cascades
            if session.revoked_at is not None:
                raise TokenInvalid(f"this session has ended ({session.revoked_reason}); sign in again")
            spent = row.used_at is not None or (await s.execute(
                update(RefreshToken).where(RefreshToken.id == row.id, RefreshToken.used_at.is_(None))
                .values(used_at=now))).rowcount != 1  # type: ignore[attr-defined]
            if spent:
                session_id, account_id = session.id, session.account_id
                await s.rollback()
                return await self._refresh_reused(session_id, account_id, caller)
            if session.expires_at <= now:
                await s.commit()
                raise TokenExpired("this session expired; sign in again")
            account = await s.get(Account, session.account_id)
            if account is None or account.status != ACTIVE:
                raise TokenInvalid("token of an account that may not sign in")
            new = self._add_refresh_token(s, session)
            session.last_used_at = now
            await s.commit()
        return self._tokens(account, session, new)

    async def logout(self, principal: Principal, everywhere: bool, caller: Caller) -> None:
        """End this sign-in (its refresh and access tokens), or with ``everywhere`` every one of the account."""
        if not everywhere and principal.session_id is None:
            raise BadRequest("this request came with an API key, not a sign-in: there is no session to end "
                             "(revoke the key instead, or send {\"all\": true} to end the account's sessions)")
        ended = await self._revoke(principal.account_id, "logout",
                                   only=None if everywhere else principal.session_id)
        await self._audit(caller, principal.actor, "auth.logout", 204, {"all": everywhere, "ended": len(ended)},
                          None, principal.account_id)

    async def me(self, principal: Principal) -> dict[str, Any]:
        return me_to_dict(await self._account(principal.account_id))

    async def change_password(self, principal: Principal, current: str, new: str, caller: Caller) -> None:
        """A new password (the policy's 422 names new_password); ends the account's other sessions."""
        account = await self._account(principal.account_id)
        self.passwords.check_policy(new, account.username, field="new_password")
        await self._reauthenticate(account, caller, "auth.password_changed", password=current,
                                   password_field="current_password")
        digest = await self.passwords.hash(new)
        async with self._sessions() as s:
            await s.execute(update(Account).where(Account.id == account.id)
                            .values(password_hash=digest, must_change_password=False, updated_at=utcnow()))
            await s.commit()
        await self.directory.refresh_account(account.id)
        ended = await self._revoke(account.id, "password_changed", keep=principal.session_id)
        await self._audit(caller, principal.actor, "auth.password_changed", 204, {"ended": len(ended)},
                          None, account.id)

    # -- 2FA enrolment ------------------------------------------------------------------------------------------
    async def setup_two_factor(self, principal: Principal) -> dict[str, Any]:
        """A new TOTP secret for the account (not in force until ``enable_two_factor`` proves the app has it)."""
        account = await self._account(principal.account_id)
        if account.two_factor_enabled:
            raise Conflict("2FA is already on; turn it off first (POST /api/v1/auth/2fa/disable)")
        secret = two_factor.new_secret()
        async with self._sessions() as s:
            await s.execute(update(Account).where(Account.id == account.id)
                            .values(totp_secret=secret, totp_last_step=None, updated_at=utcnow()))
            await s.commit()
        await self.directory.refresh_account(account.id)
        uri = two_factor.otpauth_uri(secret, account.username)
        return {"secret": secret, "otpauth_uri": uri, "qr_code": two_factor.qr_data_url(uri)}

    async def enable_two_factor(self, principal: Principal, code: str, setup_challenge: str | None,
                                caller: Caller) -> dict[str, Any]:
        """2FA on, once a code from the enrolled secret is right: the recovery codes (shown once). With the
        setup token of a required enrolment (``setup_challenge``: its sid), the sign-in completes too."""
        account = await self._account(principal.account_id)
        if account.two_factor_enabled:
            raise Conflict("2FA is already on")
        if not account.totp_secret:
            raise Conflict("no TOTP secret enrolled yet: POST /api/v1/auth/2fa/setup first")
        if setup_challenge is not None and self._is_spent(setup_challenge):
            raise TokenInvalid("this sign-in was already completed; sign in again")
        step = two_factor.matching_step(account.totp_secret, code, account.totp_last_step)
        if step is None:
            raise ValidationFailed("code: wrong or expired (is the device's clock right?)",
                                   {"code": "wrong or expired"})
        codes = two_factor.new_recovery_codes()
        async with self._sessions() as s:
            done = await s.execute(update(Account).where(Account.id == account.id,
                                                         Account.two_factor_enabled.is_(False))
                                   .values(two_factor_enabled=True, totp_last_step=step, updated_at=utcnow()))
            if done.rowcount != 1:  # type: ignore[attr-defined]
                raise Conflict("2FA is already on")
            await self._replace_recovery_codes(s, account.id, codes)
            await s.commit()
        await self.directory.refresh_account(account.id)
        await self._audit(caller, principal.actor, "auth.2fa_enabled", 200, None, None, account.id)
        answer: dict[str, Any] = {"recovery_codes": codes}
        if setup_challenge is not None:
            self._spend(setup_challenge, None)
            answer.update(await self._complete(account.id, setup_challenge.endswith(".r"), caller))
        return answer

    async def disable_two_factor(self, principal: Principal, password: str, code: str, caller: Caller) -> None:
        account = await self._account(principal.account_id)
        if not account.two_factor_enabled:
            raise Conflict("2FA is not on")
        if account.role in self.settings.require_two_factor_roles:
            raise Forbidden(f"{account.role} accounts must keep 2FA on (auth.require_two_factor_roles)",
                            {"role": account.role})
        await self._reauthenticate(account, caller, "auth.2fa_disabled", password=password, code=code)
        async with self._sessions() as s:
            await s.execute(update(Account).where(Account.id == account.id)
                            .values(two_factor_enabled=False, totp_secret=None, totp_last_step=None,
                                    updated_at=utcnow()))
            await s.execute(delete(RecoveryCode).where(RecoveryCode.account_id == account.id))
            await s.commit()
        await self.directory.refresh_account(account.id)
        await self._audit(caller, principal.actor, "auth.2fa_disabled", 204, None, None, account.id)

    async def regenerate_recovery_codes(self, principal: Principal, code: str, caller: Caller) -> dict[str, Any]:
        """Ten new recovery codes (the old ones stop working), given a current code."""
        account = await self._account(principal.account_id)
        if not account.two_factor_enabled:
            raise Conflict("2FA is not on")
        await self._reauthenticate(account, caller, "auth.2fa_recovery_codes", code=code)
        codes = two_factor.new_recovery_codes()
        async with self._sessions() as s:
            await self._replace_recovery_codes(s, account.id, codes)
            await s.commit()
        await self._audit(caller, principal.actor, "auth.2fa_recovery_codes", 200, None, None, account.id)
        return {"recovery_codes": codes}

    # -- self-registration and resets ---------------------------------------------------------------------------
    async def register(self, username: str, email: str, password: str, full_name: str,
                       caller: Caller) -> dict[str, Any]:
        """Seed 002: a ``user`` account, inactive until the code sent to ``email`` is verified. An address that
        already has an account gets a notice instead (the answer is the same: it does not say so)."""
        if not self.settings.self_registration:
            raise Forbidden("self-registration is off on this controller (auth.self_registration)",
                            {"setting": "auth.self_registration"})
        self.passwords.check_policy(password, username)
        email = email.strip().lower()
        payload = {"username": username, "email": email, "source": caller.source}
        answer = {"status": "verification_sent", "email": email, "expires_in": int(self.settings.code_ttl)}
        digest = await self.passwords.hash(password)
        async with self._sessions() as s:
            if await s.scalar(select(Account.id).where(Account.username_lower == username.lower())) is not None:
                raise AlreadyExists("username is taken", {"username": "taken"})
            email_taken = await s.scalar(select(Account.id).where(Account.email == email)) is not None
        if email_taken:
            await self.notifier.send(email, "vpnfleet: someone tried to register with your address",
                                     "Someone tried to register a new vpnfleet account with this email address, "
                                     "which already has one. If it was you: sign in, or reset your password. "
                                     "If not: nothing changed; you may ignore this message.\n")
            await self._audit(caller, ANONYMOUS, "auth.register", 202, payload, "email already registered")
            return answer
        async with self._sessions() as s:
            account = Account(username=username, username_lower=username.lower(), email=email,
                              full_name=full_name, role=Role.USER.value, status="inactive", password_hash=digest,
                              email_verified=False)
            s.add(account)
            try:
                await s.flush()
            except IntegrityError:
                raise AlreadyExists("username or email is taken", {"username": "taken"}) from None
            code = self._add_code(s, account.id, VERIFY)
            await s.commit()
        await self.directory.refresh_account(account.id)
        try:
            await self.notifier.send(email, "vpnfleet: your verification code", _code_text(code, "verify",
                                                                                          self.settings.code_ttl))
        except Exception:
            # nobody can activate an account whose code never arrived: take it back so the name is free again
            async with self._sessions() as s:
                await s.execute(delete(Account).where(Account.id == account.id))
                await s.commit()
            await self.directory.refresh_account(account.id)
            raise
        await self._audit(caller, username, "auth.register", 202, payload, None, account.id)
        return answer

    async def verify_email(self, email: str, code: str, caller: Caller) -> dict[str, Any]:
        """The code sent at registration: the address is verified and the account active."""
        account = await self._by_email(email)
        payload = {"email": email.strip().lower(), "source": caller.source}
        async with self._sessions() as s:
            row = await self._check_code(s, account, VERIFY, code)
            if row is None:
                await self._audit(caller, ANONYMOUS, "auth.verify", 422, payload, "wrong code")
                raise _wrong_code()
            assert account is not None
            if not await _spend_code(s, row):
                raise _wrong_code()
            values: dict[str, Any] = {"email_verified": True, "updated_at": utcnow()}
            if account.status == "inactive" and not account.email_verified:
                values["status"] = ACTIVE
            await s.execute(update(Account).where(Account.id == account.id).values(**values))
            await s.commit()
        await self.directory.refresh_account(account.id)
        await self._audit(caller, account.username, "auth.verify", 200, payload, None, account.id)
        return {"username": account.username, "status": values.get("status", account.status)}

    async def request_reset(self, email: str, caller: Caller) -> None:
        """Send a reset code if an account has ``email``. Answered at once either way, and the sending happens
        after the answer, so neither the answer nor its timing tells whether the address has an account."""
        email = email.strip().lower()
        await self._audit(caller, ANONYMOUS, "auth.reset_request", 202, {"email": email, "source": caller.source})
        task = asyncio.create_task(self._send_reset(email))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def reset_password(self, email: str, code: str, new_password: str, caller: Caller) -> None:
        """A new password with the emailed code: unlocks the account and ends all its sessions."""
        problems = policy_problems(new_password, "", self.passwords.min_length)
        if problems:  # the rules that need no account first: a wrong policy never spends a code
            raise ValidationFailed("new_password: " + "; ".join(problems), {"new_password": "; ".join(problems)})
        account = await self._by_email(email)
        payload = {"email": email.strip().lower(), "source": caller.source}
        async with self._sessions() as s:
            row = await self._check_code(s, account, RESET, code)
            if row is None:
                await self._audit(caller, ANONYMOUS, "auth.reset_password", 422, payload, "wrong code")
                raise _wrong_code()
            assert account is not None
            self.passwords.check_policy(new_password, account.username, field="new_password")
            digest = await self.passwords.hash(new_password)
            if not await _spend_code(s, row):
                raise _wrong_code()
            # the code proves the address: it is verified; the lock ends (the owner is back in control)
            await s.execute(update(Account).where(Account.id == account.id).values(
                password_hash=digest, must_change_password=False, login_attempts=0, locked_until=None,
                email_verified=True, updated_at=utcnow()))
            await s.commit()
        await self.directory.refresh_account(account.id)
        ended = await self._revoke(account.id, "password_changed")
        await self._audit(caller, account.username, "auth.reset_password", 204, {**payload, "ended":
                                                                                 len(ended)}, None, account.id)

    async def wait_for_messages(self) -> None:
        """Let messages being sent finish (at shutdown, and for tests)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # -- sessions and tokens ------------------------------------------------------------------------------------
    async def _complete(self, account_id: int, remember_me: bool, caller: Caller) -> dict[str, Any]:
        """A new session with its first refresh token; the account's failure count ends and last_login is now."""
        now = utcnow()
        ttl = self.settings.remember_me_ttl if remember_me else self.settings.session_ttl
        async with self._sessions() as s:
            session = AuthSession(account_id=account_id, remember_me=remember_me, created_at=now, last_used_at=now,
                                  expires_at=now + dt.timedelta(seconds=ttl), user_agent=caller.user_agent[:256],
                                  source=caller.source[:64])
            s.add(session)
            await s.flush()
            token = self._add_refresh_token(s, session)
            await s.execute(update(Account).where(Account.id == account_id)
                            .values(last_login=now, login_attempts=0, locked_until=None))
            await s.commit()
            account = await s.get(Account, account_id, populate_existing=True)
        assert account is not None
        await self.directory.refresh_account(account_id)
        return self._tokens(account, session, token)

    def _tokens(self, account: Account, session: AuthSession, refresh_token: str) -> dict[str, Any]:
        left = (session.expires_at - utcnow()).total_seconds()
        return {"access_token": self.signer.issue(account.id, session.id), "token_type": "bearer",
                "expires_in": int(self.settings.access_token_ttl), "refresh_token": refresh_token,
                "refresh_expires_in": max(0, int(left)), "user": user_to_dict(account)}

    @staticmethod
    def _add_refresh_token(s: AsyncSession, session: AuthSession) -> str:
        token = _new_refresh_token()
        s.add(RefreshToken(session_id=session.id, token_hash=hash_key(token), expires_at=session.expires_at))
        return token

    async def _refresh_reused(self, session_id: str, account_id: int, caller: Caller) -> dict[str, Any]:
        ended = await self._revoke(account_id, "refresh_reuse", only=session_id)
        account = await self._account_or_none(account_id)
        log.warning("a spent refresh token of session %s (account %s) was presented again from %s: the session "
                    "is revoked", session_id, account.username if account else account_id, caller.source)
        await self._audit(caller, ANONYMOUS, "auth.refresh_reuse", 401, {"source": caller.source,
                                                                         "ended": len(ended)},
                          "refresh token reused: session revoked", account_id)
        raise TokenInvalid("this refresh token was already used: the session is revoked; sign in again")

    async def _revoke(self, account_id: int, reason: str, only: str | None = None,
                      keep: str | None = None) -> list[str]:
        """Revoke the account's live sessions (only one, or all but one); returns their ids."""
        now = utcnow()
        async with self._sessions() as s:
            query = select(AuthSession.id).where(AuthSession.account_id == account_id,
                                                 AuthSession.revoked_at.is_(None))
            if only is not None:
                query = query.where(AuthSession.id == only)
            if keep is not None:
                query = query.where(AuthSession.id != keep)
            ids = list((await s.scalars(query)).all())
            if ids:
                await s.execute(update(AuthSession).where(AuthSession.id.in_(ids))
                                .values(revoked_at=now, revoked_reason=reason))
                await s.commit()
        for sid in ids:
            self.directory.revoke_session(sid)
        return ids

    def _is_spent(self, challenge: str) -> bool:
        return challenge in self._spent

    def _spend(self, challenge: str, expires_at: dt.datetime | None) -> None:
        """An mfa/setup challenge completes once (a replayed token with another code gets no second session)."""
        now = time.monotonic()
        self._spent = {c: until for c, until in self._spent.items() if until > now}
        left = (expires_at - utcnow()).total_seconds() if expires_at else SETUP_TTL
        self._spent[challenge] = now + max(left, 0) + 1

    # -- lockout ------------------------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _serialised(self, name: str) -> AsyncIterator[None]:
        """One attempt on ``name`` at a time: parallel guesses are counted one after another."""
        lock, waiting = self._name_locks.setdefault(name, (asyncio.Lock(), [0]))
        waiting[0] += 1
        try:
            async with lock:
                yield
        finally:
            waiting[0] -= 1
            if waiting[0] == 0:
                self._name_locks.pop(name, None)

    async def _refuse_locked(self, account: Account | None, name: str, caller: Caller, action: str,
                             payload: dict[str, Any]) -> None:
        """429 with retry_after while the name is locked (the same answer with or without an account)."""
        if account is not None:
            account = await self._account_or_none(account.id)  # the count may have moved while we waited
        until = account.locked_until if account is not None else self.unknown.locked_until(name)
        now = utcnow()
        if until is None or until <= now:
            return
        wait = max(1, math.ceil((until - now).total_seconds()))
        await self._audit(caller, ANONYMOUS, action, 429, payload, "locked", account.id if account else None)
        raise TooManyRequests(f"too many failed sign-ins for this username; try again in {wait} s", wait,
                              {"retry_after": wait})

    async def _failed(self, account_id: int | None, name: str) -> None:
        """Count a wrong password or code; the ``max_login_attempts``-th in a row locks the name."""
        limit = self.settings.max_login_attempts
        lockout = dt.timedelta(seconds=self.settings.lockout_seconds)
        now = utcnow()
        if account_id is None:
            self.unknown.failed(name, limit, lockout, now)
            return
        async with self._sessions() as s:
            attempts = await s.scalar(update(Account).where(Account.id == account_id)
                                      .values(login_attempts=Account.login_attempts + 1)
                                      .returning(Account.login_attempts))
            if attempts is not None and attempts % limit == 0:
                await s.execute(update(Account).where(Account.id == account_id).values(locked_until=now + lockout))
                log.warning("account %s locked for %g s after %d failed sign-ins", account_id,
                            lockout.total_seconds(), attempts)
            await s.commit()
        await self.directory.refresh_account(account_id)

    async def _reauthenticate(self, account: Account, caller: Caller, action: str, *, password: str | None = None,
                              password_field: str = "password", code: str | None = None) -> None:
        """A signed-in caller proves it again (password and/or a second factor) before a sensitive change. A
        wrong one is a 422 naming the field and counts towards the lockout like a wrong login."""
        async with self._serialised(account.username_lower):
            await self._refuse_locked(account, account.username_lower, caller, action, {})
            if password is not None and not await self.passwords.verify(account.password_hash, password):
                await self._failed(account.id, account.username_lower)
                await self._audit(caller, account.username, action, 422, None, f"wrong {password_field}",
                                  account.id)
                raise ValidationFailed(f"{password_field}: wrong password", {password_field: "wrong password"})
            if code is not None:
                method = "totp" if two_factor.looks_like_totp(code) else "recovery"
                if not await self._second_factor(account.id, code, method):
                    await self._failed(account.id, account.username_lower)
                    await self._audit(caller, account.username, action, 422, None, "wrong code", account.id)
                    raise ValidationFailed("code: wrong, used or expired", {"code": "wrong, used or expired"})

    # -- second factor ------------------------------------------------------------------------------------------
    async def _second_factor(self, account_id: int, code: str, method: str) -> bool:
        """Consume a TOTP step (later than the last one accepted) or an unused recovery code."""
        async with self._sessions() as s:
            account = await s.get(Account, account_id)
            if account is None or not account.two_factor_enabled or not account.totp_secret:
                return False
            if method == "recovery":
                done = await s.execute(update(RecoveryCode).where(
                    RecoveryCode.account_id == account_id, RecoveryCode.used_at.is_(None),
                    RecoveryCode.code_hash == two_factor.recovery_hash(code)).values(used_at=utcnow()))
            else:
                step = two_factor.matching_step(account.totp_secret, code, account.totp_last_step)
                if step is None:
                    return False
                last = Account.totp_last_step
                done = await s.execute(update(Account).where(Account.id == account_id,
                                                             last.is_(None) | (last < step))
                                       .values(totp_last_step=step))
            ok = done.rowcount == 1  # type: ignore[attr-defined]
            await s.commit()
            return ok

    @staticmethod
    async def _replace_recovery_codes(s: AsyncSession, account_id: int, codes: list[str]) -> None:
        await s.execute(delete(RecoveryCode).where(RecoveryCode.account_id == account_id))
        s.add_all(RecoveryCode(account_id=account_id, code_hash=two_factor.recovery_hash(c)) for c in codes)

    # -- emailed codes ------------------------------------------------------------------------------------------
    def _add_code(self, s: AsyncSession, account_id: int, purpose: str) -> str:
        code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
        s.add(AccountCode(account_id=account_id, purpose=purpose, code_hash=_code_hash(account_id, purpose, code),
                          expires_at=utcnow() + dt.timedelta(seconds=self.settings.code_ttl)))
        return code

    async def _check_code(self, s: AsyncSession, account: Account | None, purpose: str,
                          code: str) -> AccountCode | None:
        """The account's newest live code of ``purpose`` when ``code`` is it (the caller marks it used); a wrong
        try is counted (committed), and the CODE_ATTEMPTS-th spends it."""
        if account is None:
            hmac.compare_digest(_code_hash(0, purpose, code), "0" * 64)  # the same work as a real check
            return None
        row = await s.scalar(select(AccountCode).where(
            AccountCode.account_id == account.id, AccountCode.purpose == purpose, AccountCode.used_at.is_(None),
            AccountCode.expires_at > utcnow()).order_by(AccountCode.id.desc()).limit(1))
        if row is None or row.attempts >= CODE_ATTEMPTS:
            return None
        if hmac.compare_digest(_code_hash(account.id, purpose, code), row.code_hash):
            return row
        row.attempts += 1
        if row.attempts >= CODE_ATTEMPTS:
            row.used_at = utcnow()
        await s.commit()
        return None

    async def _send_reset(self, email: str) -> None:
        try:
            account = await self._by_email(email)
            if account is None:
                return
            async with self._sessions() as s:
                recent = await s.scalar(select(AccountCode.id).where(
                    AccountCode.account_id == account.id, AccountCode.purpose == RESET,
                    AccountCode.used_at.is_(None),
                    AccountCode.created_at > utcnow() - dt.timedelta(seconds=RESEND_AFTER)).limit(1))
                if recent is not None:  # asked again within a minute: the mailbox is not flooded
                    log.info("a reset code was sent to %s less than %d s ago: not sending another", email,
                             RESEND_AFTER)
                    return
                # a new code replaces any earlier one
                await s.execute(update(AccountCode).where(AccountCode.account_id == account.id,
                                                          AccountCode.purpose == RESET,
                                                          AccountCode.used_at.is_(None)).values(used_at=utcnow()))
                code = self._add_code(s, account.id, RESET)
                await s.commit()
            await self.notifier.send(email, "vpnfleet: your password reset code",
                                     _code_text(code, "reset", self.settings.code_ttl))
        except Exception:
            log.exception("could not send a password reset code to %s", email)

    # -- reading --------------------------------------------------------------------------------------------------
    async def _by_name(self, name: str) -> Account | None:
        async with self._sessions() as s:
            return await s.scalar(select(Account).where(Account.username_lower == name))

    async def _by_email(self, email: str) -> Account | None:
        async with self._sessions() as s:
            return await s.scalar(select(Account).where(Account.email == email.strip().lower()))

    async def _account_or_none(self, account_id: int) -> Account | None:
        async with self._sessions() as s:
            return await s.get(Account, account_id)

    async def _account(self, account_id: int) -> Account:
        account = await self._account_or_none(account_id)
        if account is None:
            raise TokenInvalid("the signed-in account no longer exists")
        return account

    async def _rehash(self, account_id: int, password: str) -> None:
        """The stored hash used weaker Argon2 parameters than today's: replace it while we have the password."""
        digest = await self.passwords.hash(password)
        async with self._sessions() as s:
            await s.execute(update(Account).where(Account.id == account_id).values(password_hash=digest))
            await s.commit()

    async def _audit(self, caller: Caller, actor: str, action: str, status: int, payload: Any = None,
                     error: str | None = None, account_id: int | None = None) -> None:
        try:
            await self.operations.record(actor=actor, action=action, target_type="account",
                                         target_id=str(account_id) if account_id is not None else None,
                                         payload=payload, status_code=status, error=error,
                                         request_id=caller.request_id)
        except Exception:  # the audit log must never turn a sign-in into a failure
            log.exception("could not write the operations log")


async def _spend_code(s: AsyncSession, row: AccountCode) -> bool:
    """Mark an emailed code used; False when a concurrent request spent it first."""
    done = await s.execute(update(AccountCode).where(AccountCode.id == row.id, AccountCode.used_at.is_(None))
                           .values(used_at=utcnow()))
    return done.rowcount == 1  # type: ignore[attr-defined]


def _code_text(code: str, purpose: str, ttl: float) -> str:
    what = "verify your email address" if purpose == "verify" else "reset your password"
    minutes = max(1, int(ttl // 60))
    return (f"Your vpnfleet code to {what} is:\n\n    {code}\n\nIt is good for {minutes} minutes and works once. "
            "If you did not ask for it, ignore this message.\n")
