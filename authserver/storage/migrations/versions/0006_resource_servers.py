"""Resource servers: the route manifests their guards export, kept to tell what each API key
and client can reach (issue 17).

A new table only; downgrading drops it (registrations are lost; resource servers upload them
again).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('resource_servers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('manifest', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_resource_servers')),
    sa.UniqueConstraint('name', name=op.f('uq_resource_servers_name'))
    )


def downgrade() -> None:
    op.drop_table('resource_servers')
