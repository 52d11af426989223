"""Accounts: the accounts table, the platform account, and an account on every record.

Every existing client, API key, operator, audit event and revocation moves into the platform
account, which this migration creates (``authserver init`` runs it). Downgrading drops the
account columns and the table; the records themselves stay (they all share one namespace
again, as before accounts existed).

Revision ID: 0002
Revises: 0001
"""

import secrets
import string
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

#: Tables whose rows belong to an account, and whether the column refers to accounts.id.
OWNED = (("clients", True), ("api_keys", True), ("operators", True), ("audit_events", True),
         ("revoked_tokens", False))
PLATFORM_NAME = "Platform"
ID_ALPHABET = string.ascii_letters + string.digits
ID_LENGTH = 22  # authserver.storage.models.ACCOUNT_ID_LENGTH, frozen here as migrations must be


def upgrade() -> None:
    accounts = op.create_table(
        'accounts',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('platform', sa.Boolean(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.Column('disabled_at', sa.DateTime(), nullable=True),
        sa.Column('feed_seq', sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_accounts')),
        sa.UniqueConstraint('platform', name=op.f('uq_accounts_platform')),
        sa.UniqueConstraint('feed_seq', name=op.f('uq_accounts_feed_seq')),
    )
    platform_id = "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))
    now = datetime.now(timezone.utc).replace(tzinfo=None)  # UTCDateTime stores naive UTC
    op.bulk_insert(accounts, [{"id": platform_id, "name": PLATFORM_NAME, "enabled": True,
                               "platform": True, "created_at": now, "updated_at": now}])

    for table, _ in OWNED:
        op.add_column(table, sa.Column('account_id', sa.String(length=32), nullable=True))
        op.execute(sa.text(f"UPDATE {table} SET account_id = :pid").bindparams(pid=platform_id))
    op.add_column('audit_events',
                  sa.Column('actor_account_id', sa.String(length=32), nullable=True))
    op.execute(sa.text("UPDATE audit_events SET actor_account_id = :pid")
               .bindparams(pid=platform_id))

    for table, referenced in OWNED:
        columns = ['account_id'] + (['actor_account_id'] if table == 'audit_events' else [])
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns:
                batch_op.alter_column(column, existing_type=sa.String(length=32),
                                      nullable=False)
                batch_op.create_index(batch_op.f(f'ix_{table}_{column}'), [column],
                                      unique=False)
                if referenced:
                    batch_op.create_foreign_key(batch_op.f(f'fk_{table}_{column}_accounts'),
                                                'accounts', [column], ['id'])


def downgrade() -> None:
    for table, referenced in OWNED:
        columns = ['account_id'] + (['actor_account_id'] if table == 'audit_events' else [])
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns:
                if referenced:
                    batch_op.drop_constraint(batch_op.f(f'fk_{table}_{column}_accounts'),
                                             type_='foreignkey')
                batch_op.drop_index(batch_op.f(f'ix_{table}_{column}'))
                batch_op.drop_column(column)
    op.drop_table('accounts')
