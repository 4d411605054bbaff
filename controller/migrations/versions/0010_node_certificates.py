"""agent certificate lifecycle: serials, renewal, revocation, re-enrollment (issue 10)

Nodes enrolled before this keep working: Connect still checks cert_fingerprint, and the serial and expiry
of such a certificate are recorded at its first Connect.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 12:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

_COLUMNS = (
    ('cert_serial', sa.String(length=40)),
    ('cert_not_after', sa.DateTime(timezone=True)),
    ('cert_issued_at', sa.DateTime(timezone=True)),
    ('cert_previous_fingerprint', sa.String(length=64)),
    ('cert_revoked_at', sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        for name, type_ in _COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        for name, _ in reversed(_COLUMNS):
            batch_op.drop_column(name)
