"""parcels per order (aftersales_shipments, aftersales_shipment_lines) and what each line has
shipped and delivered (aftersales_order_lines.shipped_quantity, delivered_quantity,
last_delivered_at); units a case no longer covers (aftersales_cases.released_quantity:
announced for a return, never received, not refunded)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 08:30:00

An order shipped in several parcels opens after-sales per unit delivered: an exchange of a line
with 3 of 5 units delivered is for at most 3. Lines of orders without parcels keep NULL and
follow the order's shipped_at and delivered_at, as before.
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'aftersales_shipments',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('order_id', sa.Integer(), nullable=False),
        sa.Column('carrier', sa.String(length=64), nullable=False),
        sa.Column('tracking_number', sa.String(length=64), nullable=False),
        sa.Column('shipped_at', sa.DateTime(), nullable=False),
        sa.Column('delivered_at', sa.DateTime(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['order_id'], ['aftersales_orders.id'],
                                name=op.f('fk_aftersales_shipments_order_id_aftersales_orders')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_aftersales_shipments')),
        sa.UniqueConstraint('order_id', 'carrier', 'tracking_number', name='uq_aftersales_shipments_order_tracking'),
    )
    op.create_index(op.f('ix_aftersales_shipments_order_id'), 'aftersales_shipments', ['order_id'], unique=False)
    op.create_index('ix_aftersales_shipments_tracking_number', 'aftersales_shipments', ['tracking_number'], unique=False)
    op.create_table(
        'aftersales_shipment_lines',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('shipment_id', sa.Integer(), nullable=False),
        sa.Column('line_id', sa.Integer(), nullable=False),
        sa.Column('quantity', sa.Integer(), nullable=False),
        sa.CheckConstraint('quantity > 0', name=op.f('ck_aftersales_shipment_lines_quantity_positive')),
        sa.ForeignKeyConstraint(['line_id'], ['aftersales_order_lines.id'],
                                name=op.f('fk_aftersales_shipment_lines_line_id_aftersales_order_lines')),
        sa.ForeignKeyConstraint(['shipment_id'], ['aftersales_shipments.id'],
                                name=op.f('fk_aftersales_shipment_lines_shipment_id_aftersales_shipments')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_aftersales_shipment_lines')),
        sa.UniqueConstraint('shipment_id', 'line_id', name='uq_aftersales_shipment_lines_shipment_line'),
    )
    op.create_index(op.f('ix_aftersales_shipment_lines_line_id'), 'aftersales_shipment_lines', ['line_id'], unique=False)
    with op.batch_alter_table('aftersales_order_lines') as batch:
        batch.add_column(sa.Column('shipped_quantity', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('delivered_quantity', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('last_delivered_at', sa.DateTime(), nullable=True))
    with op.batch_alter_table('aftersales_cases') as batch:
        batch.add_column(sa.Column('released_quantity', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('aftersales_cases') as batch:
        batch.drop_column('released_quantity')
    with op.batch_alter_table('aftersales_order_lines') as batch:
        batch.drop_column('last_delivered_at')
        batch.drop_column('delivered_quantity')
        batch.drop_column('shipped_quantity')
    op.drop_index(op.f('ix_aftersales_shipment_lines_line_id'), table_name='aftersales_shipment_lines')
    op.drop_table('aftersales_shipment_lines')
    op.drop_index('ix_aftersales_shipments_tracking_number', table_name='aftersales_shipments')
    op.drop_index(op.f('ix_aftersales_shipments_order_id'), table_name='aftersales_shipments')
    op.drop_table('aftersales_shipments')
