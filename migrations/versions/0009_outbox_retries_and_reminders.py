"""outbox retries: a message that failed too often is dead (aftersales_outbox.dead_at), and the
pending ones are read from a partial index; reminders: the deadline a case was reminded of
(aftersales_cases.reminded_due_at), the language the buyer asked in
(aftersales_cases.buyer_locale), where a case's express refund stands
(aftersales_cases.express_state, express_amount) and when a shop's staff last had the digest of unpaid
manual refunds (aftersales_shops.refund_digest_at); webhooks: the endpoints a shop wants its
cases' events POSTed to (aftersales_webhooks)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 01:20:00

``deliver`` retries a failed message with exponential back-off; after
``AFTERSALES_OUTBOX_MAX_ATTEMPTS`` failures it stops and marks the message dead until someone
retries it. The sweeper reminds the side a deadline waits on once per deadline.
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

PENDING = "delivered_at IS NULL AND dead_at IS NULL"


def upgrade():
    op.create_table(
        'aftersales_webhooks',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('shop_id', sa.Integer(), nullable=False),
        sa.Column('url', sa.String(length=2000), nullable=False),
        sa.Column('secret', sa.String(length=128), nullable=False),
        sa.Column('events', sa.JSON(), nullable=False),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['shop_id'], ['aftersales_shops.id'], name=op.f('fk_aftersales_webhooks_shop_id_aftersales_shops')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_aftersales_webhooks')),
    )
    op.create_index(op.f('ix_aftersales_webhooks_shop_id'), 'aftersales_webhooks', ['shop_id'], unique=False)
    with op.batch_alter_table('aftersales_outbox') as batch:
        batch.add_column(sa.Column('dead_at', sa.DateTime(), nullable=True))
    with op.batch_alter_table('aftersales_cases') as batch:
        batch.add_column(sa.Column('reminded_due_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('buyer_locale', sa.String(length=16), nullable=True))
        batch.add_column(sa.Column('express_state', sa.String(length=16), nullable=True))
        batch.add_column(sa.Column('express_amount', sa.BigInteger(), nullable=True))
    with op.batch_alter_table('aftersales_shops') as batch:
        batch.add_column(sa.Column('refund_digest_at', sa.DateTime(), nullable=True))
    op.create_index('ix_aftersales_outbox_pending', 'aftersales_outbox', ['id'], unique=False,
                    sqlite_where=sa.text(PENDING), postgresql_where=sa.text(PENDING))


def downgrade():
    op.drop_index(op.f('ix_aftersales_webhooks_shop_id'), table_name='aftersales_webhooks')
    op.drop_table('aftersales_webhooks')
    op.drop_index('ix_aftersales_outbox_pending', table_name='aftersales_outbox')
    with op.batch_alter_table('aftersales_cases') as batch:
        batch.drop_column('reminded_due_at')
        batch.drop_column('buyer_locale')
        batch.drop_column('express_state')
        batch.drop_column('express_amount')
    with op.batch_alter_table('aftersales_shops') as batch:
        batch.drop_column('refund_digest_at')
    with op.batch_alter_table('aftersales_outbox') as batch:
        batch.drop_column('dead_at')
