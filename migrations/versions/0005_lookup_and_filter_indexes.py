"""indexes for the buyer's lookup, the queue's kind and category filters, and paged timelines

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 16:00:00

- ``ix_orders_number``: "Find my order" gives an order number and no shop; the only index
  started with ``shop_id``, so PostgreSQL read every order.
- ``ix_cases_open_{shop_kind,shop_category,kind,category}``: the queue filtered by kind or
  category reads its page straight from an index of open cases (partial, like
  ``ix_cases_open_queue``) instead of every open case of the shop.
- ``ix_case_events_case_id_id`` and ``ix_notes_case_id_id`` replace the indexes on ``case_id``
  alone: a case page shows the latest events and notes, a page at a time, newest first.
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

OPEN = sa.text('open_line_id IS NOT NULL')
QUEUE_FILTERS = (('ix_cases_open_shop_kind', ['shop_id', 'kind']), ('ix_cases_open_shop_category', ['shop_id', 'category']),
                 ('ix_cases_open_kind', ['kind']), ('ix_cases_open_category', ['category']))


def upgrade():
    op.create_index('ix_orders_number', 'orders', ['number'], unique=False)
    for name, columns in QUEUE_FILTERS:
        op.create_index(name, 'cases', [*columns, 'due_at', 'id'], unique=False, sqlite_where=OPEN, postgresql_where=OPEN)
    op.create_index('ix_case_events_case_id_id', 'case_events', ['case_id', 'id'], unique=False)
    op.drop_index('ix_case_events_case_id', table_name='case_events')
    op.create_index('ix_notes_case_id_id', 'notes', ['case_id', 'id'], unique=False)
    op.drop_index('ix_notes_case_id', table_name='notes')


def downgrade():
    op.create_index('ix_notes_case_id', 'notes', ['case_id'], unique=False)
    op.drop_index('ix_notes_case_id_id', table_name='notes')
    op.create_index('ix_case_events_case_id', 'case_events', ['case_id'], unique=False)
    op.drop_index('ix_case_events_case_id_id', table_name='case_events')
    for name, _columns in reversed(QUEUE_FILTERS):
        op.drop_index(name, table_name='cases')
    op.drop_index('ix_orders_number', table_name='orders')
