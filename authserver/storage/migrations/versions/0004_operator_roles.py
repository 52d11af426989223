"""Operators: a role within their account, forced password change, a TOTP second factor and
its recovery codes.

Every existing operator becomes an ``owner`` of their account, so nobody loses a power they
had (before roles every operator could do everything). Downgrading drops the new columns and
the recovery codes; the operators themselves stay.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('operators', schema=None) as batch_op:
        # The server default fills the existing rows; the application always names a role.
        batch_op.add_column(sa.Column('role', sa.String(length=16), nullable=False,
                                      server_default='owner'))
        batch_op.add_column(sa.Column('must_change_password', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('password_changed_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('totp_secret', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('totp_confirmed_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('totp_last_step', sa.BigInteger(), nullable=True))
    with op.batch_alter_table('operators', schema=None) as batch_op:
        batch_op.alter_column('role', existing_type=sa.String(length=16), server_default=None)
    op.create_table(
        'operator_recovery_codes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('operator_id', sa.Integer(), nullable=False),
        sa.Column('code_hash', sa.String(length=64), nullable=False),
        sa.Column('used_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['operator_id'], ['operators.id'],
                                name=op.f('fk_operator_recovery_codes_operator_id_operators'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_operator_recovery_codes')),
    )
    with op.batch_alter_table('operator_recovery_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_operator_recovery_codes_operator_id'),
                              ['operator_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('operator_recovery_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_operator_recovery_codes_operator_id'))
    op.drop_table('operator_recovery_codes')
    with op.batch_alter_table('operators', schema=None) as batch_op:
        for column in ('totp_last_step', 'totp_confirmed_at', 'totp_secret',
                       'password_changed_at', 'must_change_password', 'role'):
            batch_op.drop_column(column)
