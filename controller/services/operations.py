"""The operations (audit) log: every mutating API call with actor, action, target, payload and result."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controller.db import fetch_page
from controller.models import Operation

#: body fields never written to the audit log
SECRET_FIELDS = {"password", "secret", "secret_key", "token", "api_key", "private_key", "key"}


def redact(payload: Any) -> Any:
    if isinstance(payload, dict):
        return {k: ("***" if k.lower() in SECRET_FIELDS else redact(v)) for k, v in payload.items()}
    if isinstance(payload, list):
        return [redact(v) for v in payload]
    return payload


class OperationLog:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def record(self, *, actor: str, action: str, target_type: str | None, target_id: str | None,
                     payload: Any, status_code: int, error: str | None, request_id: str,
                     client_id: str | None = None) -> None:
        async with self._sessions() as s:
            s.add(Operation(actor=actor, action=action, target_type=target_type, target_id=target_id,
                            client_id=client_id, payload=redact(payload),
                            result="success" if status_code < 400 else "fail", status_code=status_code,
                            error=error, request_id=request_id))
            await s.commit()

    async def list(self, *, client_id: str | None = None, target_id: str | None = None, action: str | None = None,
                   actor: str | None = None, result: str | None = None, page: int = 1,
                   size: int = 50) -> tuple[list[Operation], int]:
        query = select(Operation)
        for column, value in ((Operation.client_id, client_id), (Operation.target_id, target_id),
                              (Operation.actor, actor), (Operation.result, result)):
            if value:
                query = query.where(column == value)
        if action:
            query = query.where(Operation.action.ilike(f"%{action}%"))
        async with self._sessions() as s:
            return await fetch_page(s, query, (Operation.created_at.desc(),), page, size)
