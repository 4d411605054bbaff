"""What each route needs: one declaration per route, checked before its handler runs.

A route declares exactly one of::

    @router.get("/api/v1/nodes", dependencies=[requires(Permission.NODES_VIEW)])   # a permission
    async def list_clients(access: Annotated[Access, requires(Permission.SUBSCRIBERS_VIEW, owned=True)], ...)
    @router.get("/api/v1/auth/me", dependencies=[signed_in()])                     # any signed-in caller
    @router.post("/api/v1/auth/login", dependencies=[public()])                    # anyone

``owned=True`` says the route answers an owner-scoped caller (a ``user``) with their own rows only: the
handler passes ``access.owner_id`` to its service, which filters by it and answers others' ids with 404.
Owner-scoped callers are refused every route that does not say ``owned``, whatever their permissions, so a
route that forgets it refuses users rather than leaking other people's rows. ``check_routes`` refuses to start
an app with a route that declares nothing, or more than once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from fastapi import Depends
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import Request

from controller.auth import Principal
from controller.errors import Forbidden, Unauthorized
from controller.permissions import Permission


@dataclass(frozen=True)
class Requirement:
    """What a route needs: ``permission`` (None with ``public``: nothing; None without: any signed-in
    caller), and whether it filters by owner."""

    permission: Permission | None = None
    public: bool = False
    owned: bool = False

    def describe(self) -> str:
        if self.public:
            return "public"
        return self.permission.value if self.permission else "signed in"


#: an account id none has (ids start at 1): a filter by it matches nothing
NO_ACCOUNT = 0


@dataclass(frozen=True)
class Access:
    """The caller of a route, as its handler sees it."""

    principal: Principal | None
    #: only rows of this account (an owner-scoped caller on an ``owned`` route), or None: every row
    owner_id: int | None = None

    def owner_filter(self, requested: int | None) -> int | None:
        """The owner a list filters by, given the ``owner_id`` the caller asked for: what it asked (None: every
        row) for an operator; its own account for an owner-scoped caller, and for one asking for another
        account's, an id no account has (ids start at 1), so it gets an empty list as if it owned nothing."""
        if self.owner_id is None:
            return requested
        return self.owner_id if requested in (None, self.owner_id) else NO_ACCOUNT


class _Check:
    """The dependency behind a declaration; ``requirement`` is how ``requirement_of`` finds it."""

    def __init__(self, requirement: Requirement) -> None:
        self.requirement = requirement

    async def __call__(self, request: Request) -> Access:
        req = self.requirement
        principal: Principal | None = request.scope.get("state", {}).get("principal")
        if req.public:
            return Access(principal)
        if principal is None:  # the edge (controller.edge.auth) lets no anonymous call reach a non-public route
            raise Unauthorized("API key or access token required")
        if req.permission is not None and not principal.may(req.permission):
            raise Forbidden(f"this needs the permission {req.permission.value}",
                            {"required": req.permission.value})
        if principal.owner_id is not None and not req.owned:
            raise Forbidden(f"a {principal.role.value} account may not do this (it needs {req.describe()} over "
                            "everyone's resources)",
                            {"required": req.describe(), "role": principal.role.value})
        return Access(principal, principal.owner_id if req.owned else None)


def requires(permission: Permission, *, owned: bool = False) -> Any:
    """The route needs ``permission``; with ``owned``, an owner-scoped caller gets only their own rows."""
    return Depends(_Check(Requirement(permission, owned=owned)))


def signed_in(*, owned: bool = True) -> Any:
    """Any signed-in caller (their own profile, sessions, keys: such routes act on the caller's own things)."""
    return Depends(_Check(Requirement(owned=owned)))


def public() -> Any:
    """Anyone, signed in or not (the route authenticates by other means, or serves nothing private)."""
    return Depends(_Check(Requirement(public=True)))


def requirement_of(route: APIRoute) -> Requirement | None:
    """The route's one declaration (None: it has none). ValueError when it has more than one."""
    found = [d.call.requirement for d in _walk(route.dependant) if isinstance(d.call, _Check)]
    if len(found) > 1:
        raise ValueError(f"{sorted(route.methods)} {route.path} declares {len(found)} requirements")
    return found[0] if found else None


def _walk(dependant: Dependant) -> Iterable[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _walk(sub)


def check_routes(routes: Iterable[APIRoute], public_path: Any) -> None:
    """Refuse (RuntimeError naming each) routes that declare no requirement, more than one, or whose ``public``
    disagrees with the edge's ``public_path(path)`` (the edge lets anonymous calls through by path, before
    routing)."""
    problems = []
    for route in routes:
        name = f"{','.join(sorted(route.methods))} {route.path}"
        try:
            req = requirement_of(route)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if req is None:
            problems.append(f"{name} declares no permission (requires(...), signed_in() or public())")
            continue
        if req.public != bool(public_path(route.path)):
            problems.append(f"{name} is {'public' if req.public else 'not public'} but the edge "
                            f"{'does not let' if req.public else 'lets'} anonymous calls through to it "
                            "(controller.edge.auth.is_public)")
    if problems:
        raise RuntimeError("routes with a wrong access declaration:\n  " + "\n  ".join(problems))
