"""session generations: logout, password change, deactivation and "forget" revoke old cookies

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 15:30:00

A staff login cookie names the account *and* its session generation; so does a buyer's access
grant for an order. Bumping the number (logout, a new password, deactivation; "forget this
order", a new buyer e-mail) makes every cookie issued before it worthless, copies included.
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('staff_users') as batch:
        batch.add_column(sa.Column('session_generation', sa.Integer(), nullable=False, server_default='0'))
    with op.batch_alter_table('orders') as batch:
        batch.add_column(sa.Column('buyer_access_generation', sa.Integer(), nullable=False, server_default='0'))


def downgrade():
    with op.batch_alter_table('orders') as batch:
        batch.drop_column('buyer_access_generation')
    with op.batch_alter_table('staff_users') as batch:
        batch.drop_column('session_generation')
