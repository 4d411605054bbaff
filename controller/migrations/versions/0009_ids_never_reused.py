"""integer ids never reused after a delete (issue 10)

SQLite hands a deleted row's id (the highest one) to the next insert unless the table is AUTOINCREMENT; the
audit log then mixes two resources under one id. This rebuilds every table with an integer id as
AUTOINCREMENT (alembic batch mode: a copy with the same columns, data, indexes and foreign keys).
PostgreSQL's serial/identity sequences never hand an id out twice already: nothing to do there.

The migration runs in one transaction with foreign keys on, and there ``DROP TABLE`` deletes the rows first,
running their ``ON DELETE CASCADE``: dropping ``nodes`` would empty ``wireguard_servers`` and everything under
it. So the rows of every table a rebuild can cascade to are kept aside first and put back after.

An id deleted before this upgrade can still come back once (SQLite kept no record of it); none after.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

#: the tables with an integer primary key, parents before children
TABLES = ("nodes", "enrollment_tokens", "api_keys", "wireguard_servers", "wireguard_clients", "ipv6_pools",
          "ipv6_allocations")


def _children(inspector: sa.Inspector, tables: list[str]) -> dict[str, set[str]]:
    """table -> the tables whose foreign keys refer to it."""
    out: dict[str, set[str]] = {t: set() for t in tables}
    for t in tables:
        for fk in inspector.get_foreign_keys(t):
            if fk["referred_table"] in out and fk["referred_table"] != t:
                out[fk["referred_table"]].add(t)
    return out


def _parents_first(tables: set[str], children: dict[str, set[str]]) -> list[str]:
    """``tables`` ordered so that a table comes after every table it refers to."""
    parents = {t: {p for p, kids in children.items() if t in kids and p in tables} for t in tables}
    order: list[str] = []
    while parents:
        ready = sorted(t for t, ps in parents.items() if not ps - set(order))
        if not ready:  # a reference cycle (none in this schema): the rest in any order
            ready = sorted(parents)
        order += ready
        for t in ready:
            del parents[t]
    return order


def _rebuild(autoincrement: bool) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    inspector = sa.inspect(bind)
    existing = inspector.get_table_names()
    targets = [t for t in TABLES if t in existing]
    children = _children(inspector, existing)
    affected: set[str] = set()
    todo = list(targets)
    while todo:  # the targets and every table a DROP of one cascades to, transitively
        t = todo.pop()
        if t not in affected:
            affected.add(t)
            todo += children[t]
    order = _parents_first(affected, children)
    columns = {t: ", ".join(f'"{c["name"]}"' for c in inspector.get_columns(t)) for t in order}

    # checks of NO ACTION references wait for the commit, when every row is back
    op.execute("PRAGMA defer_foreign_keys = ON")
    for t in order:
        op.execute(f'CREATE TEMP TABLE "_keep_{t}" AS SELECT {columns[t]} FROM "{t}"')
    for t in targets:
        with op.batch_alter_table(t, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}):
            pass
    for t in reversed(order):
        op.execute(f'DELETE FROM "{t}"')
    for t in order:
        op.execute(f'INSERT INTO "{t}" ({columns[t]}) SELECT {columns[t]} FROM "_keep_{t}"')
        op.execute(f'DROP TABLE "_keep_{t}"')


def upgrade() -> None:
    _rebuild(autoincrement=True)


def downgrade() -> None:
    _rebuild(autoincrement=False)
