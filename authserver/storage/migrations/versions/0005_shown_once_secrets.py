"""Web UI Post/Redirect/Get: a new API key or client secret waits, encrypted, in the
operator's server-side session until the page after the redirect shows it once.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('shown_once_secrets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('session_hash', sa.String(length=64), nullable=False),
    sa.Column('object_type', sa.String(length=32), nullable=False),
    sa.Column('object_id', sa.String(length=64), nullable=False),
    sa.Column('secret_encrypted', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['session_hash'], ['operator_sessions.id_hash'],
                            name=op.f('fk_shown_once_secrets_session_hash_operator_sessions'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shown_once_secrets'))
    )
    with op.batch_alter_table('shown_once_secrets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_shown_once_secrets_session_hash'), ['session_hash'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_shown_once_secrets_created_at'), ['created_at'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('shown_once_secrets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_shown_once_secrets_created_at'))
        batch_op.drop_index(batch_op.f('ix_shown_once_secrets_session_hash'))
    op.drop_table('shown_once_secrets')
