"""Who may do what: permissions named per resource and action, roles as default sets of them.

Every route declares the one permission it needs (``controller.access.requires``); an account holds its role's
set, or a narrower one; a key holds its account's, or a narrower one. Nothing is ever widened: an account's or
a key's permissions are intersected with what its role (or account) allows every time they are used, so
narrowing an account narrows its keys at once.
"""

from __future__ import annotations

import enum
from typing import Iterable


class Permission(enum.StrEnum):
    """One action on one kind of resource. The value is what the API and the database store."""

    NODES_VIEW = "nodes.view"
    NODES_EDIT = "nodes.edit"  # create, change, start/stop/reboot, delete nodes; revoke/re-enroll certificates
    LOGS_VIEW = "logs.view"  # live events and node log tails
    SUBSCRIBERS_VIEW = "subscribers.view"
    SUBSCRIBERS_EDIT = "subscribers.edit"
    WIREGUARD_VIEW = "wireguard.view"
    WIREGUARD_EDIT = "wireguard.edit"
    NODEPASS_VIEW = "nodepass.view"
    NODEPASS_EDIT = "nodepass.edit"
    IPV6_VIEW = "ipv6.view"
    IPV6_EDIT = "ipv6.edit"
    OPERATIONS_VIEW = "operations.view"  # the audit log
    SYSTEM_VIEW = "system.view"  # fleet-wide agent settings, version details
    SYSTEM_EDIT = "system.edit"  # fleet-wide agent settings, the shared-credential cut-over
    KEYS_MANAGE = "keys.manage"  # one's own API keys
    KEYS_MANAGE_ALL = "keys.manage_all"  # every account's API keys
    USERS_VIEW = "users.view"
    USERS_MANAGE = "users.manage"  # create, change, delete accounts; reset their passwords


class Role(enum.StrEnum):
    ADMIN = "admin"  # everything
    MANAGER = "manager"  # operates the fleet and subscribers; no accounts, others' keys or system settings
    VIEWER = "viewer"  # reads the fleet
    USER = "user"  # a subscriber or customer: only what they own


ALL = frozenset(Permission)
VIEW = frozenset(p for p in Permission if p.value.endswith(".view"))

#: each role's default set (an account may be narrowed below it, never widened above it)
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: ALL,
    Role.MANAGER: frozenset({
        Permission.NODES_VIEW, Permission.NODES_EDIT, Permission.LOGS_VIEW,
        Permission.SUBSCRIBERS_VIEW, Permission.SUBSCRIBERS_EDIT, Permission.WIREGUARD_VIEW,
        Permission.WIREGUARD_EDIT, Permission.NODEPASS_VIEW, Permission.NODEPASS_EDIT, Permission.IPV6_VIEW,
        Permission.IPV6_EDIT, Permission.OPERATIONS_VIEW, Permission.SYSTEM_VIEW, Permission.KEYS_MANAGE}),
    Role.VIEWER: VIEW - {Permission.USERS_VIEW},
    # what a user reaches is further limited to what they own (controller.access.Access.owner_id)
    Role.USER: frozenset({Permission.SUBSCRIBERS_VIEW, Permission.WIREGUARD_VIEW, Permission.NODEPASS_VIEW,
                          Permission.KEYS_MANAGE}),
}

#: roles whose holders are limited to what they own (the same routes answer them with their own rows only)
OWNER_SCOPED_ROLES = frozenset({Role.USER})

#: seed 001's access_level of a key: "read" keeps only view permissions
ACCESS_LEVELS = ("read", "write", "full")


def parse(names: Iterable[str]) -> frozenset[Permission]:
    """Permission names as sent by a client; an unknown name is a ValueError naming it (and "*" is all)."""
    out: set[Permission] = set()
    for name in names:
        if name == "*":
            return ALL
        try:
            out.add(Permission(name))
        except ValueError:
            raise ValueError(f"unknown permission {name!r}; known: {', '.join(sorted(ALL))}") from None
    return frozenset(out)


def effective(role: Role | str, account_permissions: Iterable[str] | None,
              key_permissions: Iterable[str] | None = None, access_level: str = "full") -> frozenset[Permission]:
    """What an account (and, when given, one of its keys) may do now: the role's set, narrowed by the account's
    list, narrowed by the key's list and access level. Unknown names in stored lists count for nothing."""
    allowed = ROLE_PERMISSIONS[Role(role)]
    if account_permissions is not None:
        allowed = allowed & _known(account_permissions)
    if key_permissions is not None:
        allowed = allowed & _known(key_permissions)
    if access_level == "read":
        allowed = allowed & VIEW
    return allowed


def _known(names: Iterable[str]) -> frozenset[Permission]:
    if "*" in names:
        return ALL
    return frozenset(Permission(n) for n in names if n in ALL)


def as_list(permissions: Iterable[Permission]) -> list[str]:
    """Permissions as the API shows them: sorted names, ``["*"]`` for all."""
    names = set(permissions)
    return ["*"] if names == ALL else sorted(names)
