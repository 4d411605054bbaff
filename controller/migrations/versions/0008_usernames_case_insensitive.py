"""usernames unique regardless of case (issue 10)

A unique index on lower(username) (SQLite and PostgreSQL): "Alice" beside "alice" is refused from now on.

Subscribers that already clash are RENAMED, not refused: a migration that refuses would leave the controller
unable to start until someone edits its database by hand, while a rename changes nothing a subscriber's app
relies on (credentials and the subscription URL stay; only the profile title shows the new name). In each
group of names equal regardless of case the oldest subscriber (created_at, then id) keeps its name; each
other one gets "<name>-2", "-3", ... (the first such name free in any case, within 64 characters). Every
rename is reported: one WARNING line per rename on the "vpnfleet.migrations" logger (old name, new name, id,
and the subscriber it clashed with) and an entry in the operations log (actor "migration", action
"rename_username", client_id = the renamed subscriber), so `GET /api/v1/operations?client_id=...` shows it.
The downgrade drops the index; renamed subscribers keep their new names.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 12:00:00
"""

import datetime as dt
import logging
import uuid
from collections.abc import Iterable

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

log = logging.getLogger("vpnfleet.migrations")

INDEX = "uq_clients_username_lower"
#: the longest username (clients.username is VARCHAR(64))
MAX_LENGTH = 64

_clients = sa.table("clients", sa.column("id", sa.String), sa.column("username", sa.String),
                    sa.column("created_at", sa.DateTime(timezone=True)),
                    sa.column("updated_at", sa.DateTime(timezone=True)), sa.column("version", sa.Integer))
_operations = sa.table("operations", sa.column("id", sa.String), sa.column("actor", sa.String),
                       sa.column("action", sa.String), sa.column("target_type", sa.String),
                       sa.column("target_id", sa.String), sa.column("client_id", sa.String),
                       sa.column("payload", sa.JSON), sa.column("result", sa.String),
                       sa.column("status_code", sa.Integer), sa.column("error", sa.Text),
                       sa.column("request_id", sa.String), sa.column("created_at", sa.DateTime(timezone=True)))


def free_name(name: str, taken: set[str]) -> str:
    """``name-N`` for the smallest N >= 2 whose lower case is not in ``taken`` (cut to 64 characters).
    Written out here, not imported, so that this migration stays what it was when the code around it changes."""
    n = 2
    while True:
        suffix = f"-{n}"
        candidate = name[:MAX_LENGTH - len(suffix)] + suffix
        if candidate.lower() not in taken:
            return candidate
        n += 1


def plan_renames(rows: Iterable[tuple[str, str]], taken: set[str]) -> list[tuple[str, str, str, str]]:
    """``(id, old name, new name, id of the subscriber that keeps the name)`` for every subscriber whose name
    equals an earlier one's regardless of case. ``rows`` are (id, username) oldest first; ``taken`` is every
    name in use, in lower case (grown with the new names)."""
    keeper: dict[str, str] = {}
    renames = []
    for client_id, name in rows:
        key = name.lower()
        if key not in keeper:
            keeper[key] = client_id
            continue
        new = free_name(name, taken)
        taken.add(new.lower())
        renames.append((client_id, name, new, keeper[key]))
    return renames


def upgrade() -> None:
    conn = op.get_bind()
    lowered = sa.func.lower(_clients.c.username)
    clashing = sa.select(lowered).group_by(lowered).having(sa.func.count() > 1)
    rows = conn.execute(sa.select(_clients.c.id, _clients.c.username).where(lowered.in_(clashing))
                        .order_by(lowered, _clients.c.created_at, _clients.c.id)).all()
    if rows:
        taken = {name for (name,) in conn.execute(sa.select(lowered))}
        renames = plan_renames([(r.id, r.username) for r in rows], taken)
        now = dt.datetime.now(dt.timezone.utc)
        if conn.dialect.name == "sqlite":  # stored without a zone there (controller.models.UTCDateTime)
            now = now.replace(tzinfo=None)
        log.warning("migration 0008: usernames are now unique regardless of case; %d subscriber(s) renamed "
                    "(the oldest of each name keeps it; rename them with PATCH /api/v1/clients/{id}):",
                    len(renames))
        for client_id, old, new, kept_by in renames:
            log.warning("migration 0008: renamed subscriber %s from %r to %r (clashed with subscriber %s)",
                        client_id, old, new, kept_by)
            conn.execute(_clients.update().where(_clients.c.id == client_id)
                         .values(username=new, updated_at=now, version=_clients.c.version + 1))
            conn.execute(_operations.insert().values(
                id=str(uuid.uuid4()), actor="migration", action="rename_username", target_type="client",
                target_id=client_id, client_id=client_id,
                payload={"from": old, "to": new, "clashed_with": kept_by,
                         "reason": "usernames are unique regardless of case (migration 0008)"},
                result="success", status_code=200, error=None, request_id="migration-0008", created_at=now))
    op.create_index(INDEX, "clients", [sa.text("lower(username)")], unique=True)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="clients")
