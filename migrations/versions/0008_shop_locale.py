"""a shop's default language for its pages: aftersales_shops.locale

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 20:40:00

Pages pick the language a visitor chose, else the browser's, else the shop's (``en``,
``zh_Hans`` or ``zh_Hant``; empty: English).
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('aftersales_shops') as batch:
        batch.add_column(sa.Column('locale', sa.String(length=16), nullable=True))


def downgrade():
    with op.batch_alter_table('aftersales_shops') as batch:
        batch.drop_column('locale')
