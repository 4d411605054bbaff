"""Role x route: every route of the app, called with a key of every role, is allowed or refused exactly as
its declaration (controller.access) and the role's permissions (controller.permissions) say.

The matrix is generated from the route table, so a new route is in it the day it is added; a route without a
declaration fails here (and the app refuses to start with one).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest

from controller.access import Requirement
from controller.access_reference import declared_routes
from controller.edge.auth import is_public
from controller.permissions import OWNER_SCOPED_ROLES, ROLE_PERMISSIONS, Role
from tests.accounts import Person, seed_accounts
from tests.controller_process import ControllerProcess

ROLES = [Role.MANAGER, Role.VIEWER, Role.USER]
#: path parameters that name a UUID resource (the others are integer ids, file names or secrets)
UUID_PATHS = re.compile(r"^/api/v1/(nodes|clients)/|^/api/v2ray/instances/")


ROUTES = declared_routes()


def fill(path: str) -> str:
    """A concrete URL for a route: ids that name nothing (an allowed caller gets 404 or 422, never a change)."""
    value = str(uuid.UUID(int=0xDEAD)) if UUID_PATHS.match(path) else "999999999"
    return re.sub(r"\{[^}]+\}", value, path)


def allowed(role: Role, req: Requirement) -> bool:
    if req.public:
        return True
    if role in OWNER_SCOPED_ROLES and not req.owned:
        return False
    return req.permission is None or req.permission in ROLE_PERMISSIONS[role]


@pytest.fixture(scope="module")
def ctl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ControllerProcess, dict[Role, str]]]:
    c = ControllerProcess(tmp_path_factory.mktemp("matrix") / "data")
    try:
        c.start()  # the first start makes the admin account
        c.stop()
        seeded = seed_accounts(c.data_dir, [Person(f"{r.value}-account", role=r.value, with_key=True) for r in ROLES])
        keys = {r: seeded[f"{r.value}-account"].key for r in ROLES}
        keys[Role.ADMIN] = c.admin_key()
        c.start()
        yield c, keys
    finally:
        c.cleanup()


def call(c: ControllerProcess, method: str, path: str, key: str | None) -> tuple[int, dict]:
    headers = {"X-API-Key": key} if key else {}
    body = {} if method in ("POST", "PUT", "PATCH") else None
    with httpx.Client(base_url=c.url, verify=c.verify(), timeout=20) as client:
        # streamed: the event and log streams never end; only the status and an error body are read
        with client.stream(method, fill(path), headers=headers, json=body) as r:
            if r.status_code in (401, 403):
                r.read()
                return r.status_code, r.json()
            return r.status_code, {}


def test_every_route_declares_what_it_needs() -> None:
    missing = [f"{m} {p}" for m, p, req in ROUTES if req is None]
    assert not missing
    assert len(ROUTES) > 60  # the whole route table, not an empty one


@pytest.mark.parametrize("method,path,req", ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_role_route_matrix(ctl: tuple[ControllerProcess, dict[Role, str]], method: str, path: str,
                           req: Requirement) -> None:
    c, keys = ctl
    assert req.public == is_public(path)
    if not req.public:
        status, body = call(c, method, path, None)
        assert status == 401, (method, path, status)
    for role in [Role.ADMIN, *ROLES]:
        status, body = call(c, method, path, keys[role])
        error = body.get("error")
        if isinstance(error, str):  # seed 000's /api/v2ray errors: {"error": message}
            refused = status == 403 and req.describe() in error
        else:
            refused = status == 403 and (error or {}).get("code") == "INSUFFICIENT_PERMISSIONS"
        if allowed(role, req):
            assert not refused and (req.public or status != 401), (role, method, path, status, body)
        else:
            assert refused, (role, method, path, status, body)
            if not isinstance(error, str):
                assert error["details"]["required"] == req.describe()


def test_what_changes_needs_more_than_a_view_permission() -> None:
    """A declaration can be wrong in itself: a mutating route guarded by a view permission would let viewers
    change things. Every POST/PUT/PATCH/DELETE needs an edit/manage permission, or acts on the caller's own
    things (signed in), or is public (signing in)."""
    wrong = [f"{m} {p} ({req.describe()})" for m, p, req in ROUTES
             if m != "GET" and req is not None and req.permission is not None and req.permission.endswith(".view")]
    assert not wrong
    # and the opposite direction: reading the fleet never needs an edit permission, except tcping, which makes
    # the node open connections
    edits_to_read = [f"{m} {p}" for m, p, req in ROUTES if m == "GET" and req is not None and req.permission
                     and not req.permission.endswith(".view") and not p.endswith("/tcping")]
    assert not edits_to_read
