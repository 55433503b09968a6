"""indexes for the seller queue's keyset pages: open cases by (shop, deadline, id)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 03:30:00

The queue reads a page as "the next 50 cases after this (deadline, id)", straight from an index
instead of sorting every open case of the shop (and instead of OFFSET). The two partial indexes
hold open cases only (``open_line_id IS NOT NULL``), so they stay as small as the open queue.
``ix_cases_shop_state`` and ``ix_cases_state`` become ``ix_cases_shop_state_due`` and
``ix_cases_state_due``, which also serve the queue filtered by state (of a shop, of every shop).
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

OPEN = sa.text('open_line_id IS NOT NULL')


def upgrade():
    op.create_index('ix_cases_open_queue', 'cases', ['shop_id', 'due_at', 'id'], unique=False,
                    sqlite_where=OPEN, postgresql_where=OPEN)
    op.create_index('ix_cases_open_due', 'cases', ['due_at', 'id'], unique=False,
                    sqlite_where=OPEN, postgresql_where=OPEN)
    op.create_index('ix_cases_shop_state_due', 'cases', ['shop_id', 'state', 'due_at', 'id'], unique=False)
    op.drop_index('ix_cases_shop_state', table_name='cases')
    op.create_index('ix_cases_state_due', 'cases', ['state', 'due_at', 'id'], unique=False)
    op.drop_index('ix_cases_state', table_name='cases')


def downgrade():
    op.create_index('ix_cases_state', 'cases', ['state'], unique=False)
    op.drop_index('ix_cases_state_due', table_name='cases')
    op.create_index('ix_cases_shop_state', 'cases', ['shop_id', 'state'], unique=False)
    op.drop_index('ix_cases_shop_state_due', table_name='cases')
    op.drop_index('ix_cases_open_due', table_name='cases')
    op.drop_index('ix_cases_open_queue', table_name='cases')
