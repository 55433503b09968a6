"""order lines carry the import tax paid; the refund ceiling is price + tax

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 01:20:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('order_lines', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tax_paid', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.drop_constraint(op.f('ck_order_lines_refund_ceiling'), type_='check')
        batch_op.create_check_constraint(
            'refund_ceiling', 'refund_committed >= 0 AND refund_committed <= paid_amount + tax_paid')
        batch_op.create_check_constraint('tax_not_negative', 'tax_paid >= 0')


def downgrade():
    with op.batch_alter_table('order_lines', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_order_lines_tax_not_negative'), type_='check')
        batch_op.drop_constraint(op.f('ck_order_lines_refund_ceiling'), type_='check')
        batch_op.create_check_constraint('refund_ceiling', 'refund_committed >= 0 AND refund_committed <= paid_amount')
        batch_op.drop_column('tax_paid')
