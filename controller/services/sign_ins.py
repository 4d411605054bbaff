"""Signing in: passwords, access and refresh tokens, 2FA, registration, verification and password resets.

SKELETON (issue 12): filled in by the sign-in work; the constructor below is the contract app.py wires.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controller.auth import Directory
from controller.notifier import Notifier
from controller.passwords import Passwords
from controller.services.operations import OperationLog
from controller.settings import Settings
from controller.tokens import TokenSigner


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
