"""DPoP (RFC 9449): clients registered with dpop_bound_access_tokens, and the table of proof
jtis already used at the token endpoint.

Existing clients keep getting Bearer tokens unless they send a proof (the flag defaults to false,
as §5.2 says it does when omitted).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dpop_bound_access_tokens', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    op.create_table('seen_dpop_proofs',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_seen_dpop_proofs'))
    )
    with op.batch_alter_table('seen_dpop_proofs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_seen_dpop_proofs_expires_at'), ['expires_at'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('seen_dpop_proofs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_seen_dpop_proofs_expires_at'))
    op.drop_table('seen_dpop_proofs')
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.drop_column('dpop_bound_access_tokens')
