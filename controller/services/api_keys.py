"""Scoped API keys (seed 001's /api/v1/auth/api-keys): create (shown once), list, revoke, rotate.

SKELETON (issue 12): filled in by the accounts work; the constructor below is the contract app.py wires.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controller.auth import Directory
from controller.settings import Settings


class ApiKeyService:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], directory: Directory) -> None:
        self.settings = settings
        self._sessions = sessions
        self.directory = directory
