"""``vpnfleet-controller create-admin``: make an admin account, or set a new password for it, from the shell.

For the operator who has the data directory but no working sign-in (a database upgraded from before accounts,
whose admin has no password; a forgotten password). The password is typed twice at a terminal, or read from
stdin with --password-stdin; it is never printed or logged. Migrations run first, so this works on a database
the controller has not opened yet.
"""

from __future__ import annotations

import asyncio
import getpass
import re
import sys
from typing import TextIO

from sqlalchemy import select, update

from controller.auth import ACTIVE, ADMIN_PASSWORD_FILE
from controller.db import make_engine, make_sessionmaker, prepare_database
from controller.errors import ValidationFailed
from controller.models import Account, AuthSession, utcnow
from controller.passwords import Passwords
from controller.permissions import Role
from controller.schemas.clients import USERNAME
from controller.settings import Settings


class AdminError(Exception):
    """What went wrong, for the operator (exit status 1)."""


def read_password(from_stdin: bool, stdin: TextIO = sys.stdin) -> str:
    if from_stdin:
        line = stdin.readline()
        if not line.strip():
            raise AdminError("no password on stdin")
        return line.rstrip("\r\n")
    if not stdin.isatty():
        raise AdminError("no terminal to ask for the password: pass it on stdin with --password-stdin")
    first = getpass.getpass("New password: ")
    if getpass.getpass("Again: ") != first:
        raise AdminError("the two passwords differ; nothing changed")
    return first


async def set_admin_password(settings: Settings, username: str, password: str) -> str:
    """Create the admin account ``username`` or set its password; what was done, in words."""
    if not re.fullmatch(USERNAME, username):
        raise AdminError(f"'{username}' is no valid username (3-64 letters, digits, _ . @ -)")
    passwords = Passwords(settings.argon2_time_cost, settings.argon2_memory_kib,
                          min_length=settings.password_min_length)
    try:
        passwords.check_policy(password, username)
    except ValidationFailed as exc:
        raise AdminError(exc.message) from None
    engine = make_engine(settings.db_url)
    try:
        await prepare_database(engine)
        password_hash = await passwords.hash(password)
        async with make_sessionmaker(engine)() as s:
            account = await s.scalar(select(Account).where(Account.username_lower == username.lower()))
            if account is None:
                s.add(Account(username=username, username_lower=username.lower(), full_name="Administrator",
                              role=Role.ADMIN.value, status=ACTIVE, password_hash=password_hash))
                done = f"admin account '{username}' created (restart a running controller for it to sign in)"
            elif account.role != Role.ADMIN.value:
                raise AdminError(f"account '{account.username}' exists and is a {account.role}, not an admin; "
                                 "nothing changed (give another --username, or change its role in the API)")
            else:
                account.password_hash, account.must_change_password = password_hash, False
                account.login_attempts, account.locked_until, account.status = 0, None, ACTIVE
                # whoever is signed in with the old password is signed out (their refresh tokens stop now)
                await s.execute(update(AuthSession).where(AuthSession.account_id == account.id,
                                                          AuthSession.revoked_at.is_(None))
                                .values(revoked_at=utcnow(), revoked_reason="password_changed"))
                done = f"new password set for admin account '{account.username}'; its sign-ins ended"
            await s.commit()
    finally:
        await engine.dispose()
    first_password = settings.data_dir / ADMIN_PASSWORD_FILE
    if username.lower() == "admin" and first_password.exists():
        first_password.unlink()  # the first start's password works no more: no file may say otherwise
        done += f"; removed {first_password}"
    return done


def create_admin(settings: Settings, username: str, from_stdin: bool) -> int:
    try:
        password = read_password(from_stdin)
        print(f"vpnfleet-controller: {asyncio.run(set_admin_password(settings, username, password))}")
        return 0
    except AdminError as exc:
        print(f"vpnfleet-controller: {exc}", file=sys.stderr)
        return 1
