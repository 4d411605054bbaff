"""node telemetry_rejected (telemetry entries the controller refused from the node)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 09:10:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        # existing nodes start from zero: nothing was refused before the controller checked
        batch_op.add_column(sa.Column('telemetry_rejected', sa.BigInteger(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.drop_column('telemetry_rejected')
