"""the order's own workflow: aftersales_orders.state (pending_payment, paid, picking, packed,
cancelling, shipped, delivered, cancelled), its deadline (due_at, due_trigger: an unpaid order
expires), why it was cancelled (cancel_reason, cancel_note), ended_at; and its timeline,
aftersales_order_events; coupons (aftersales_order_coupons) and points (aftersales_orders.points_*,
aftersales_order_lines.points_share) an order was paid with, and lines cancelled before shipment
(aftersales_order_lines.cancelled_at); the queue's search by return tracking number
(ix_aftersales_cases_return_tracking)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 19:00:00

Existing orders take the state their dates say: delivered, shipped, paid, else pending_payment
(an unpaid order gets no deadline here; its next push gives it one, counted from its placed_at
like a new order's: AFTERSALES_UNPAID_TIMEOUT_HOURS).
"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('aftersales_orders') as batch:
        batch.add_column(sa.Column('state', sa.String(length=32), server_default='pending_payment', nullable=False))
        batch.add_column(sa.Column('due_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('due_trigger', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('cancel_reason', sa.String(length=32), nullable=True))
        batch.add_column(sa.Column('cancel_note', sa.Text(), nullable=True))
        batch.add_column(sa.Column('ended_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('points_used', sa.Integer(), server_default='0', nullable=False))
        batch.add_column(sa.Column('points_amount', sa.BigInteger(), server_default='0', nullable=False))
        batch.add_column(sa.Column('points_returned', sa.Integer(), server_default='0', nullable=False))
    with op.batch_alter_table('aftersales_order_lines') as batch:
        batch.add_column(sa.Column('points_share', sa.Integer(), server_default='0', nullable=False))
        batch.add_column(sa.Column('cancelled_at', sa.DateTime(), nullable=True))
    op.execute("UPDATE aftersales_orders SET state = CASE"
               " WHEN delivered_at IS NOT NULL THEN 'delivered'"
               " WHEN shipped_at IS NOT NULL THEN 'shipped'"
               " WHEN paid_at IS NOT NULL THEN 'paid'"
               " ELSE 'pending_payment' END,"
               " ended_at = delivered_at")
    op.create_index('ix_aftersales_orders_due', 'aftersales_orders', ['due_at', 'id'], unique=False,
                    sqlite_where=sa.text('due_at IS NOT NULL'), postgresql_where=sa.text('due_at IS NOT NULL'))
    op.create_index('ix_aftersales_orders_state_shop', 'aftersales_orders', ['state', 'shop_id'], unique=False)
    # The queue's search by the buyer's return tracking number.
    op.create_index(op.f('ix_aftersales_cases_return_tracking'), 'aftersales_cases', ['return_tracking'], unique=False)
    op.create_table(
        'aftersales_order_events',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('order_id', sa.Integer(), nullable=False),
        sa.Column('actor_type', sa.String(length=32), nullable=False),
        sa.Column('actor_id', sa.String(length=254), nullable=True),
        sa.Column('trigger', sa.String(length=64), nullable=False),
        sa.Column('from_state', sa.String(length=32), nullable=False),
        sa.Column('to_state', sa.String(length=32), nullable=False),
        sa.Column('note', sa.Text(), nullable=False),
        sa.Column('data', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['order_id'], ['aftersales_orders.id'],
                                name=op.f('fk_aftersales_order_events_order_id_aftersales_orders')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_aftersales_order_events')),
    )
    op.create_index('ix_aftersales_order_events_order_id_id', 'aftersales_order_events', ['order_id', 'id'], unique=False)
    op.create_table(
        'aftersales_order_coupons',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('order_id', sa.Integer(), nullable=False),
        sa.Column('code', sa.String(length=64), nullable=False),
        sa.Column('amount', sa.BigInteger(), nullable=False),
        sa.Column('threshold', sa.BigInteger(), nullable=False),
        sa.Column('positions', sa.JSON(), nullable=False),
        sa.Column('returned_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['order_id'], ['aftersales_orders.id'],
                                name=op.f('fk_aftersales_order_coupons_order_id_aftersales_orders')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_aftersales_order_coupons')),
        sa.UniqueConstraint('order_id', 'code', name='uq_aftersales_order_coupons_order_code'),
    )


def downgrade():
    op.drop_table('aftersales_order_coupons')
    with op.batch_alter_table('aftersales_order_lines') as batch:
        batch.drop_column('cancelled_at')
        batch.drop_column('points_share')
    op.drop_index('ix_aftersales_order_events_order_id_id', table_name='aftersales_order_events')
    op.drop_table('aftersales_order_events')
    op.drop_index(op.f('ix_aftersales_cases_return_tracking'), table_name='aftersales_cases')
    op.drop_index('ix_aftersales_orders_state_shop', table_name='aftersales_orders')
    op.drop_index('ix_aftersales_orders_due', table_name='aftersales_orders')
    with op.batch_alter_table('aftersales_orders') as batch:
        for column in ('points_returned', 'points_amount', 'points_used', 'ended_at', 'cancel_note', 'cancel_reason', 'due_trigger', 'due_at', 'state'):
            batch.drop_column(column)
