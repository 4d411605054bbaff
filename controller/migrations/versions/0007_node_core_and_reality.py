"""node core (xray | v2ray), REALITY key pair and short ids, ws path, per-slot ports

Nodes that exist already were made for V2Ray: their core is "v2ray" and their stored inbounds keep the old
shape (no "profile"), which marks them as from before cores. The controller moves each of them to the new
profiles on its next apply (controller.services.desired_state / NodeService.agent_connected): to Xray with
VMess + VLESS-REALITY-Vision (on the old VLESS port) when its agent reports the "xray" capability, else VMess
only on V2Ray. Never again plain VLESS.

Every node gets its own REALITY X25519 key pair (made here, in-process, with the cryptography package), one
short id and a WebSocket path, so what subscriptions carry is fixed from now on.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 10:00:00
"""

import base64
import secrets

from alembic import op
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _keypair() -> tuple[str, str]:
    # Written out here (not imported from controller.reality) so that this migration stays what it was
    # when the code around it changes.
    private = X25519PrivateKey.generate()
    return (_b64url(private.private_bytes_raw()),
            _b64url(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)))


def upgrade() -> None:
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('core', sa.String(length=8), server_default='v2ray', nullable=False))
        batch_op.add_column(sa.Column('v2ray_ports', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('reality_private_key', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('reality_public_key', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('reality_short_ids', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('reality_dest', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('reality_server_names', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('ws_path', sa.String(length=64), nullable=True))
    conn = op.get_bind()
    nodes = sa.table('nodes', sa.column('id', sa.Integer), sa.column('reality_private_key', sa.String),
                     sa.column('reality_public_key', sa.String), sa.column('reality_short_ids', sa.JSON),
                     sa.column('ws_path', sa.String))
    ids = [row[0] for row in conn.execute(sa.select(nodes.c.id))]
    for node_id in ids:  # one key pair each: no two nodes share a REALITY key
        private, public = _keypair()
        conn.execute(nodes.update().where(nodes.c.id == node_id).values(
            reality_private_key=private, reality_public_key=public, reality_short_ids=[secrets.token_hex(8)],
            ws_path="/" + secrets.token_hex(8)))
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.alter_column('reality_private_key', existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column('reality_public_key', existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column('reality_short_ids', existing_type=sa.JSON(), nullable=False)
        batch_op.alter_column('ws_path', existing_type=sa.String(length=64), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.drop_column('ws_path')
        batch_op.drop_column('reality_server_names')
        batch_op.drop_column('reality_dest')
        batch_op.drop_column('reality_short_ids')
        batch_op.drop_column('reality_public_key')
        batch_op.drop_column('reality_private_key')
        batch_op.drop_column('v2ray_ports')
        batch_op.drop_column('core')
