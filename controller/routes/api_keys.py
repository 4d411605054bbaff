"""Scoped API keys (seed 001's /api/v1/auth/api-keys): create (the key shown once), list, get, revoke, rotate.
Every account with keys.manage manages its own; keys.manage_all reaches every account's."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response

from controller.access import Access, requires, signed_in
from controller.api import Ctl, IntId, Page, errors, page_of
from controller.models import Account, ApiKey
from controller.permissions import as_list, effective
from controller.permissions import Permission as P
from controller.schemas.api_keys import ApiKeyBody, ApiKeyCreated, ApiKeyOut, ApiKeyQuery
from controller.serializers import iso
from controller.services.api_keys import ApiKeyService, key_status

router = APIRouter(tags=["api-keys"])

#: changing keys: one's own (a user account too); the service widens to every account's with keys.manage_all
Keys = Annotated[Access, requires(P.KEYS_MANAGE, owned=True)]
#: reading them: any signed-in caller sees its own account's keys (names, prefixes, scopes: no secret), so
#: reads need no edit permission; keys.manage_all shows every account's
OwnKeys = Annotated[Access, signed_in()]


def key_to_dict(svc: ApiKeyService, k: ApiKey, account: Account | None) -> dict[str, Any]:
    """What a key's holder may know of it: never the key (only its prefix) or its hash."""
    rate = ({"requests_per_minute": k.rate_limit_per_minute, "burst_limit": k.burst_limit}
            if k.rate_limit_per_minute else None)
    permitted = effective(account.role, account.permissions, k.permissions, k.access_level) if account else set()
    return {
        "id": k.id, "name": k.name, "prefix": k.prefix, "account_id": k.account_id,
        "username": account.username if account else None, "access_level": k.access_level,
        "permissions": k.permissions, "effective_permissions": as_list(permitted), "allowed_ips": k.allowed_ips,
        "allowed_endpoints": k.allowed_endpoints, "rate_limit": rate, "expires_at": iso(k.expires_at),
        "description": k.description, "status": key_status(k), "created_at": iso(k.created_at),
        "last_used": iso(svc.last_used(k)), "revoked_at": iso(k.revoked_at),
    }


@router.get("/api/v1/auth/api-keys", response_model=Page[ApiKeyOut], summary="List API keys")
async def list_keys(q: Annotated[ApiKeyQuery, Query()], ctl: Ctl, access: OwnKeys) -> dict[str, Any]:
    """The caller's keys (with keys.manage_all: every account's, or `account_id`'s), oldest first."""
    assert access.principal is not None
    rows, total = await ctl.api_keys.list(q, access.principal)
    return page_of([key_to_dict(ctl.api_keys, k, a) for k, a in rows], total, q)


@router.post("/api/v1/auth/api-keys", status_code=201, response_model=ApiKeyCreated, responses=errors(403, 409),
             summary="Create an API key")
async def create_key(body: ApiKeyBody, request: Request, ctl: Ctl, access: Keys) -> dict[str, Any]:
    """A new key, answered once in `api_key` (then only its `prefix`). It never exceeds its account, nor the
    caller (403 naming the permission; a key making a key: nor that key's addresses, paths, expiry, limit).
    409: the name is taken. 422: an invalid field (unknown permission, CIDR, glob, a past expires_at)."""
    assert access.principal is not None
    made, account = await ctl.api_keys.create(body, access.principal)
    request.state.created_id = str(made.row.id)
    return {**key_to_dict(ctl.api_keys, made.row, account), "api_key": made.key}


@router.get("/api/v1/auth/api-keys/{id}", response_model=ApiKeyOut, responses=errors(404), summary="Get an API key")
async def get_key(id: IntId, ctl: Ctl, access: OwnKeys) -> dict[str, Any]:
    assert access.principal is not None
    row, account = await ctl.api_keys.get(id, access.principal)
    return key_to_dict(ctl.api_keys, row, account)


@router.delete("/api/v1/auth/api-keys/{id}", status_code=204, response_class=Response,
               responses={204: {"description": "revoked"}, **errors(403, 404)}, summary="Revoke an API key")
async def revoke_key(id: IntId, ctl: Ctl, access: Keys) -> Response:
    """Revoke a key (idempotent): refused from the next request on."""
    assert access.principal is not None
    await ctl.api_keys.revoke(id, access.principal)
    return Response(status_code=204)


@router.post("/api/v1/auth/api-keys/{id}/rotate", response_model=ApiKeyCreated, responses=errors(403, 404, 409),
             summary="Rotate an API key")
async def rotate_key(id: IntId, ctl: Ctl, access: Keys) -> dict[str, Any]:
    """A new secret for the key, same scopes, answered once in `api_key`; the old one is refused from the next
    request on. 409: a revoked or expired key."""
    assert access.principal is not None
    made, account = await ctl.api_keys.rotate(id, access.principal)
    return {**key_to_dict(ctl.api_keys, made.row, account), "api_key": made.key}
