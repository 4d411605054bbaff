"""per-node subscriber credentials; WireGuard peer-to-peer switch

Every subscriber gets the secret their per-node ids are derived from (controller.credentials). Subscribers
that exist already keep their shared id valid on every node (shared_credential) until their next rotation or
the fleet's cut-over, so their apps work until they refresh the subscription.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 09:30:00
"""

import secrets

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('credential_secret', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('shared_credential', sa.Boolean(), server_default=sa.false(), nullable=False))
    conn = op.get_bind()
    clients = sa.table('clients', sa.column('id', sa.String), sa.column('credential_secret', sa.String),
                       sa.column('shared_credential', sa.Boolean))
    ids = [row[0] for row in conn.execute(sa.select(clients.c.id))]
    for client_id in ids:  # one secret each: no two subscribers share a derivation
        conn.execute(clients.update().where(clients.c.id == client_id)
                     .values(credential_secret=secrets.token_urlsafe(32), shared_credential=True))
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.alter_column('credential_secret', existing_type=sa.String(length=64), nullable=False)
    with op.batch_alter_table('wireguard_servers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('peer_to_peer', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('wireguard_servers', schema=None) as batch_op:
        batch_op.drop_column('peer_to_peer')
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.drop_column('shared_credential')
        batch_op.drop_column('credential_secret')
