"""a refund can be cancelled by staff (aftersales_refunds.status 'cancelled') and keeps the
error its payment plugin raised while sending it (aftersales_refunds.provider_error); the
shipping fee is refunded once per order, as its own refund (aftersales_refunds.component,
aftersales_orders.shipping_refunded)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 08:00:00

A manual refund not paid yet can be withdrawn with a reason (its amount is freed); a refund
whose provider could not be reached stays pending, shows the error to staff and is sent again
under the same idempotency key.
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def _status_check(batch, statuses):
    batch.drop_constraint(op.f('ck_aftersales_refunds_status'), type_='check')
    batch.create_check_constraint(op.f('ck_aftersales_refunds_status'),
                                  "status IN (" + ", ".join(f"'{status}'" for status in statuses) + ")")


def upgrade():
    with op.batch_alter_table('aftersales_refunds') as batch:
        batch.add_column(sa.Column('provider_error', sa.Text(), nullable=True))
        batch.add_column(sa.Column('component', sa.String(length=16), server_default='goods', nullable=False))
        _status_check(batch, ('pending', 'succeeded', 'failed', 'cancelled'))
    with op.batch_alter_table('aftersales_orders') as batch:
        batch.add_column(sa.Column('shipping_refunded', sa.BigInteger(), server_default='0', nullable=False))


def downgrade():
    # A cancelled refund reads as failed in the older schema: its amount was freed either way.
    op.execute("UPDATE aftersales_refunds SET status = 'failed' WHERE status = 'cancelled'")
    with op.batch_alter_table('aftersales_orders') as batch:
        batch.drop_column('shipping_refunded')
    with op.batch_alter_table('aftersales_refunds') as batch:
        _status_check(batch, ('pending', 'succeeded', 'failed'))
        batch.drop_column('component')
        batch.drop_column('provider_error')
