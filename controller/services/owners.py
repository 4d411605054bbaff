"""Ownership: subscribers, WireGuard peers (and later NodePass instances) may belong to an account.

A ``user`` account reaches only what it owns (controller.access, ``owned=True`` routes); services filter by
``owner_id`` and answer another owner's ids exactly as unknown ones.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from controller.errors import ValidationFailed
from controller.models import Account


async def check_owner(s: AsyncSession, owner_id: int | None) -> int | None:
    """``owner_id`` when it names an account (or is None); a 422 naming the field otherwise."""
    if owner_id is not None and await s.get(Account, owner_id) is None:
        raise ValidationFailed(f"owner_id: no account {owner_id}", {"owner_id": f"no account {owner_id}"})
    return owner_id
