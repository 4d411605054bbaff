"""accounts, sessions, scoped API keys, ownership (issue 12)

Creates the people layer: accounts (seed 001's users), sign-in sessions with their rotating refresh tokens,
2FA recovery codes and emailed verification/reset codes; gives API keys an account and seed 001's scopes;
gives subscribers and WireGuard peers an optional owner.

The old admin key keeps working: an ``admin`` account is made for it (no password yet: the controller says how
to set one) and every existing key becomes that account's key, with the power it had (full access).

The new columns are added with a plain ALTER TABLE (SQLite accepts an inline, unnamed REFERENCES for a
nullable column): a batch rebuild would DROP the tables, which cascades to their usage rows (see 0009).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 15:00:00
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

_KEY_COLUMNS = (
    sa.Column('prefix', sa.String(length=16), nullable=False, server_default=''),
    sa.Column('access_level', sa.String(length=8), nullable=False, server_default='full'),
    sa.Column('permissions', sa.JSON(), nullable=True),
    sa.Column('allowed_ips', sa.JSON(), nullable=True),
    sa.Column('allowed_endpoints', sa.JSON(), nullable=True),
    sa.Column('rate_limit_per_minute', sa.Integer(), nullable=True),
    sa.Column('burst_limit', sa.Integer(), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('description', sa.Text(), nullable=False, server_default=''),
    sa.Column('last_used', sa.DateTime(timezone=True), nullable=True),
)
_OWNED = ('clients', 'wireguard_clients')


def upgrade() -> None:
    op.create_table(
        'accounts',
        sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column('username', sa.String(length=64), nullable=False),
        sa.Column('username_lower', sa.String(length=64), nullable=False),
        sa.Column('email', sa.String(length=254), nullable=True, unique=True),
        sa.Column('full_name', sa.String(length=128), nullable=False),
        sa.Column('role', sa.String(length=16), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('permissions', sa.JSON(), nullable=True),
        sa.Column('password_hash', sa.String(length=256), nullable=True),
        sa.Column('must_change_password', sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column('email_verified', sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column('two_factor_enabled', sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column('totp_secret', sa.String(length=64), nullable=True),
        sa.Column('totp_last_step', sa.BigInteger(), nullable=True),
        sa.Column('last_login', sa.DateTime(timezone=True), nullable=True),
        sa.Column('login_attempts', sa.Integer(), nullable=False, server_default='0'),
        sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index('uq_accounts_username_lower', 'accounts', ['username_lower'], unique=True)
    op.create_index('ix_accounts_role', 'accounts', ['role'])
    op.create_index('ix_accounts_status', 'accounts', ['status'])

    op.create_table(
        'auth_sessions',
        sa.Column('id', sa.String(length=36), primary_key=True),
        sa.Column('account_id', sa.Integer(), sa.ForeignKey('accounts.id', ondelete='CASCADE'), nullable=False),
        sa.Column('remember_me', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('revoked_reason', sa.String(length=32), nullable=True),
        sa.Column('user_agent', sa.String(length=256), nullable=False),
        sa.Column('source', sa.String(length=64), nullable=False),
    )
    op.create_index('ix_auth_sessions_account_id', 'auth_sessions', ['account_id'])
    op.create_index('ix_auth_sessions_revoked_at', 'auth_sessions', ['revoked_at'])

    op.create_table(
        'refresh_tokens',
        sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column('session_id', sa.String(length=36), sa.ForeignKey('auth_sessions.id', ondelete='CASCADE'),
                  nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False, unique=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index('ix_refresh_tokens_session_id', 'refresh_tokens', ['session_id'])

    op.create_table(
        'recovery_codes',
        sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column('account_id', sa.Integer(), sa.ForeignKey('accounts.id', ondelete='CASCADE'), nullable=False),
        sa.Column('code_hash', sa.String(length=256), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index('ix_recovery_codes_account_id', 'recovery_codes', ['account_id'])

    op.create_table(
        'account_codes',
        sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column('account_id', sa.Integer(), sa.ForeignKey('accounts.id', ondelete='CASCADE'), nullable=False),
        sa.Column('purpose', sa.String(length=8), nullable=False),
        sa.Column('code_hash', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index('ix_account_codes_account_id', 'account_codes', ['account_id'])

    for column in _KEY_COLUMNS:
        op.add_column('api_keys', column._copy())
    _add_account_reference('api_keys', 'account_id', 'CASCADE')
    for table in _OWNED:
        _add_account_reference(table, 'owner_id', 'SET NULL')

    if op.get_bind().dialect.name != "sqlite":  # SQLite does not enforce VARCHAR lengths
        # "alice (key monitoring)": an account and its key name
        op.alter_column('operations', 'actor', type_=sa.String(length=160), existing_nullable=False)
    _give_old_keys_an_account()


def _add_account_reference(table: str, column: str, ondelete: str) -> None:
    """A nullable column referring to accounts.id, and its index. Alembic's add_column sends a foreign key as a
    separate ALTER, which SQLite has not; SQLite takes it inline in ADD COLUMN."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"ALTER TABLE {table} ADD COLUMN {column} INTEGER REFERENCES accounts (id) ON DELETE {ondelete}")
    else:
        op.add_column(table, sa.Column(column, sa.Integer(), sa.ForeignKey('accounts.id', ondelete=ondelete),
                                       nullable=True))
    op.create_index(f'ix_{table}_{column}', table, [column])


def _give_old_keys_an_account() -> None:
    """Every key from before accounts acted with full power: it becomes the key of an ``admin`` account."""
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT count(*) FROM api_keys")).scalar_one() == 0:
        return
    now = dt.datetime.now(dt.timezone.utc)
    if bind.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)
    accounts = sa.table('accounts', *(sa.column(c) for c in (
        'username', 'username_lower', 'full_name', 'role', 'status', 'email_verified', 'created_at', 'updated_at')))
    bind.execute(accounts.insert().values(username='admin', username_lower='admin', full_name='Administrator',
                                          role='admin', status='active', email_verified=False, created_at=now,
                                          updated_at=now))
    admin_id = bind.execute(sa.text("SELECT id FROM accounts WHERE username_lower = 'admin'")).scalar_one()
    bind.execute(sa.text("UPDATE api_keys SET account_id = :id"), {"id": admin_id})


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.execute("UPDATE operations SET actor = left(actor, 64)")
        op.alter_column('operations', 'actor', type_=sa.String(length=64), existing_nullable=False)
    for table in reversed(_OWNED):
        op.drop_index(f'ix_{table}_owner_id', table_name=table)
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column('owner_id')
    op.drop_index('ix_api_keys_account_id', table_name='api_keys')
    with op.batch_alter_table('api_keys') as batch_op:
        batch_op.drop_column('account_id')
        for column in reversed(_KEY_COLUMNS):
            batch_op.drop_column(column.name)
    for table in ('account_codes', 'recovery_codes', 'refresh_tokens', 'auth_sessions', 'accounts'):
        op.drop_table(table)
