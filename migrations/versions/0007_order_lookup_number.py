"""the buyer's lookup matches the order number as typed: aftersales_orders.lookup_number

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 18:30:00

Order numbers are unique per shop, and people type them with other letter case and spaces
around (`` bk-4001 `` for ``BK-4001``). ``lookup_number`` holds the number as the lookup compares
it (``aftersales.models.lookup_number``: trimmed, lower case), set by the model whenever the
number is; its index replaces the one on ``number``. Filled here for the orders already stored,
with the same Python function, so the rule is one.
"""
from alembic import op
import sqlalchemy as sa

from aftersales.models import lookup_number


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

ORDERS = sa.table('aftersales_orders', sa.column('id', sa.Integer), sa.column('number', sa.String),
                  sa.column('lookup_number', sa.String))


def upgrade():
    with op.batch_alter_table('aftersales_orders') as batch:
        batch.add_column(sa.Column('lookup_number', sa.String(length=64), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(sa.select(ORDERS.c.id, ORDERS.c.number)).all()
    for start in range(0, len(rows), 1000):
        bind.execute(sa.update(ORDERS).where(ORDERS.c.id == sa.bindparam('order_id'))
                     .values(lookup_number=sa.bindparam('folded')),
                     [{'order_id': row.id, 'folded': lookup_number(row.number)} for row in rows[start:start + 1000]])
    with op.batch_alter_table('aftersales_orders') as batch:
        batch.alter_column('lookup_number', existing_type=sa.String(length=64), nullable=False)
        batch.create_index('ix_aftersales_orders_lookup_number', ['lookup_number'], unique=False)
        batch.drop_index('ix_aftersales_orders_number')


def downgrade():
    with op.batch_alter_table('aftersales_orders') as batch:
        batch.create_index('ix_aftersales_orders_number', ['number'], unique=False)
        batch.drop_index('ix_aftersales_orders_lookup_number')
        batch.drop_column('lookup_number')
