"""Messages to people (verification and password-reset codes): SMTP, or files in DATA_DIR/outbox/.

SKELETON (issue 12): filled in by the sign-in work; the interface below is the contract.
"""

from __future__ import annotations

from typing import Protocol

from controller.settings import Settings


class Notifier(Protocol):
    async def send(self, to: str, subject: str, body: str) -> None:
        """Deliver one message; raises Unavailable when it cannot be delivered."""


class _Unset:
    async def send(self, to: str, subject: str, body: str) -> None:
        raise NotImplementedError("skeleton")


def make_notifier(settings: Settings) -> Notifier:
    """SMTP when smtp.host is set, else the outbox directory."""
    return _Unset()
