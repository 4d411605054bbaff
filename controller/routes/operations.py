"""The operations (audit) log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from controller.access import requires
from controller.permissions import Permission as P
from controller.api import Ctl, Page, page_of
from controller.schemas.system import OperationOut, OperationQuery
from controller.serializers import operation_to_dict

router = APIRouter()


@router.get("/api/v1/operations", dependencies=[requires(P.OPERATIONS_VIEW)], response_model=Page[OperationOut], tags=["operations"],
            summary="Operations log")
async def list_operations(q: Annotated[OperationQuery, Query()], ctl: Ctl) -> dict[str, Any]:
    """Every mutating API call, newest first; filters match exactly (action: a substring of 'METHOD /path')."""
    rows, total = await ctl.operations.list(
        client_id=q.client_id, target_id=q.target_id, action=q.action, actor=q.actor, result=q.result,
        page=q.page, size=q.size)
    return page_of([operation_to_dict(r) for r in rows], total, q)
