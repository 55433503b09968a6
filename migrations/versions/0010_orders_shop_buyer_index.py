"""a buyer's orders at one shop from one index (aftersales_orders (shop_id, buyer_email)): the
express refund decision reads the buyer's record at every shipped return

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 14:20:00

Without it the planner searched ix_aftersales_orders_shop_id, which on a one-shop install is
every order.
"""
from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index('ix_aftersales_orders_shop_buyer_email', 'aftersales_orders', ['shop_id', 'buyer_email'])


def downgrade():
    op.drop_index('ix_aftersales_orders_shop_buyer_email', table_name='aftersales_orders')
