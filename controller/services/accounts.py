"""Accounts (seed 001's /api/v1/users): create, change, delete, reset passwords; no privilege escalation.

SKELETON (issue 12): filled in by the accounts work; the constructor below is the contract app.py wires.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controller.auth import Directory
from controller.passwords import Passwords
from controller.settings import Settings


class AccountService:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], passwords: Passwords,
                 directory: Directory) -> None:
        self.settings = settings
        self._sessions = sessions
        self.passwords = passwords
        self.directory = directory
