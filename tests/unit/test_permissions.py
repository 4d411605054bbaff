"""Permissions and roles (controller.permissions): the role sets say what the issue says, names parse strictly,
and what an account or key may do is only ever narrowed."""

from __future__ import annotations

import itertools

import pytest

from controller.permissions import ALL, ROLE_PERMISSIONS, VIEW, Permission as P, Role, as_list, effective, parse


def test_roles_are_the_issues() -> None:
    assert ROLE_PERMISSIONS[Role.ADMIN] == ALL
    manager = ROLE_PERMISSIONS[Role.MANAGER]
    # operates the fleet and subscribers; no accounts, no keys of others, no system settings
    assert {P.NODES_EDIT, P.SUBSCRIBERS_EDIT, P.WIREGUARD_EDIT, P.NODEPASS_EDIT, P.KEYS_MANAGE} <= manager
    assert not manager & {P.USERS_VIEW, P.USERS_MANAGE, P.KEYS_MANAGE_ALL, P.SYSTEM_EDIT}
    # read only
    assert ROLE_PERMISSIONS[Role.VIEWER] <= VIEW and P.NODES_VIEW in ROLE_PERMISSIONS[Role.VIEWER]
    # what they own, and their own keys
    assert ROLE_PERMISSIONS[Role.USER] == {P.SUBSCRIBERS_VIEW, P.WIREGUARD_VIEW, P.NODEPASS_VIEW, P.KEYS_MANAGE}
    assert all(p.value.count(".") == 1 for p in ALL)


def test_parse() -> None:
    assert parse(["nodes.view", "nodes.edit", "nodes.view"]) == {P.NODES_VIEW, P.NODES_EDIT}
    assert parse(["*"]) == ALL and parse([]) == frozenset()
    with pytest.raises(ValueError, match="'nodes.fly'"):
        parse(["nodes.view", "nodes.fly"])
    with pytest.raises(ValueError):
        parse(["NODES.VIEW"])  # names are exact


@pytest.mark.parametrize("role", list(Role))
def test_effective_never_exceeds_the_role(role: Role) -> None:
    assert effective(role, None) == ROLE_PERMISSIONS[role]
    assert effective(role.value, ["*"]) == ROLE_PERMISSIONS[role]  # "*" is all the role has, not more
    assert effective(role, ["users.manage", "nodes.view"]) == ROLE_PERMISSIONS[role] & {P.USERS_MANAGE,
                                                                                       P.NODES_VIEW}
    for level in ("read", "write", "full"):
        for key in (None, ["*"], ["nodes.edit", "keys.manage"]):
            got = effective(role, None, key, level)
            assert got <= ROLE_PERMISSIONS[role]
            if level == "read":
                assert got <= VIEW


def test_a_key_is_within_its_account() -> None:
    account = ["nodes.view", "nodes.edit"]
    assert effective(Role.MANAGER, account, ["nodes.edit", "subscribers.edit"]) == {P.NODES_EDIT}
    assert effective(Role.MANAGER, account, None, "read") == {P.NODES_VIEW}
    assert effective(Role.MANAGER, account, ["*"]) == {P.NODES_VIEW, P.NODES_EDIT}
    # narrowing the account narrows its keys at once (they are intersected when used)
    assert effective(Role.MANAGER, ["nodes.view"], ["nodes.edit"]) == frozenset()


def test_unknown_stored_names_count_for_nothing() -> None:
    assert effective(Role.ADMIN, ["nodes.view", "removed.permission"]) == {P.NODES_VIEW}
    assert effective(Role.ADMIN, None, ["bgp.view"]) == frozenset()


def test_as_list() -> None:
    assert as_list(ALL) == ["*"]
    assert as_list({P.WIREGUARD_VIEW, P.NODES_VIEW}) == ["nodes.view", "wireguard.view"]
    assert as_list(set()) == []
    # every role's list parses back to the same set
    for role in Role:
        assert parse(as_list(ROLE_PERMISSIONS[role])) == ROLE_PERMISSIONS[role]


def test_narrowing_is_monotonic() -> None:
    """More restrictions never give more: for any two account lists a <= b, effective(a) <= effective(b)."""
    names = ["nodes.view", "nodes.edit", "users.manage", "keys.manage"]
    subsets = [list(c) for n in range(len(names) + 1) for c in itertools.combinations(names, n)]
    for role in Role:
        for a, b in itertools.product(subsets, subsets):
            if set(a) <= set(b):
                assert effective(role, a) <= effective(role, b)
