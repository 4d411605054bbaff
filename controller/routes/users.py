"""Accounts (seed 001's /api/v1/users): list, create, change, delete, reset a password. Admins only by default
(users.view, users.manage); the escalation rules are AccountService's."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response

from controller.access import Access, requires
from controller.api import Ctl, IntId, Page, errors, page_of
from controller.models import Account
from controller.permissions import Permission as P
from controller.permissions import as_list, effective
from controller.schemas.users import AccountBody, AccountOut, AccountQuery, AccountUpdate, ResetPasswordBody
from controller.serializers import iso

router = APIRouter(tags=["users"])

Manager = Annotated[Access, requires(P.USERS_MANAGE)]


def account_to_dict(a: Account) -> dict[str, Any]:
    """Seed 001's user fields (``AccountOut``); never the password hash or the TOTP secret."""
    return {
        "id": a.id, "username": a.username, "email": a.email, "full_name": a.full_name, "role": a.role,
        "status": a.status, "permissions": as_list(effective(a.role, a.permissions)),
        "two_factor_enabled": a.two_factor_enabled, "last_login": iso(a.last_login),
        "login_attempts": a.login_attempts, "locked_until": iso(a.locked_until),
        "must_change_password": a.must_change_password, "created_at": iso(a.created_at),
        "updated_at": iso(a.updated_at),
    }


@router.get("/api/v1/users", dependencies=[requires(P.USERS_VIEW)], response_model=Page[AccountOut],
            summary="List accounts")
async def list_users(q: Annotated[AccountQuery, Query()], ctl: Ctl) -> dict[str, Any]:
    """Accounts, filtered by `search` (username or email contains, any case), `role` and `status`, sorted by
    `sort` (username, email, created_at, last_login; accounts without one last) in `order`."""
    rows, total = await ctl.accounts.list(q)
    return page_of([account_to_dict(a) for a in rows], total, q)


@router.post("/api/v1/users", status_code=201, response_model=AccountOut, responses=errors(403, 409),
             summary="Create an account")
async def create_user(body: AccountBody, request: Request, ctl: Ctl, access: Manager) -> dict[str, Any]:
    """A new account. 409: the username or email is taken (in any case). 422: a field is invalid, the password
    breaks the policy, or `permissions` go beyond the role's. 403: only an admin makes an admin."""
    assert access.principal is not None
    account = await ctl.accounts.create(body, access.principal)
    request.state.created_id = str(account.id)
    return account_to_dict(account)


@router.get("/api/v1/users/{id}", dependencies=[requires(P.USERS_VIEW)], response_model=AccountOut,
            responses=errors(404), summary="Get an account")
async def get_user(id: IntId, ctl: Ctl) -> dict[str, Any]:
    return account_to_dict(await ctl.accounts.get(id))


async def _update(id: int, body: AccountUpdate, ctl: Ctl, access: Access) -> dict[str, Any]:
    assert access.principal is not None
    return account_to_dict(await ctl.accounts.update(id, body, access.principal))


_UPDATE_DOC = """Change an account: only the fields given change. 403: one's own role, status or permissions;
an admin account (or making one) by a non-admin. 409: the last active admin demoted or switched off; a taken
username or email. 422: `permissions` beyond the role's (a new role without `permissions` gets its defaults)."""


@router.put("/api/v1/users/{id}", response_model=AccountOut, responses=errors(403, 404, 409),
            summary="Update an account", description=_UPDATE_DOC)
async def put_user(id: IntId, body: AccountUpdate, ctl: Ctl, access: Manager) -> dict[str, Any]:
    return await _update(id, body, ctl, access)


@router.patch("/api/v1/users/{id}", response_model=AccountOut, responses=errors(403, 404, 409),
              summary="Update an account (as PUT)", description=_UPDATE_DOC)
async def patch_user(id: IntId, body: AccountUpdate, ctl: Ctl, access: Manager) -> dict[str, Any]:
    return await _update(id, body, ctl, access)


@router.delete("/api/v1/users/{id}", status_code=204, response_class=Response,
               responses={204: {"description": "deleted"}, **errors(403, 404, 409)}, summary="Delete an account")
async def delete_user(id: IntId, ctl: Ctl, access: Manager) -> Response:
    """Delete an account: its keys and sign-ins end at once; subscribers and peers it owned stay, owned by
    nobody. 403: one's own account; an admin account by a non-admin. 409: the last active admin."""
    assert access.principal is not None
    await ctl.accounts.delete(id, access.principal)
    return Response(status_code=204)


@router.post("/api/v1/users/{id}/reset-password", response_model=AccountOut, responses=errors(403, 404),
             summary="Reset an account's password")
async def reset_password(id: IntId, body: ResetPasswordBody, ctl: Ctl, access: Manager) -> dict[str, Any]:
    """Set a new password (the policy applies: 422 naming new_password). `force_change`: the account must pick
    its own at the next login. The account's sign-ins end and any lockout is lifted."""
    assert access.principal is not None
    return account_to_dict(await ctl.accounts.reset_password(id, body, access.principal))
