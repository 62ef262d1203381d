"""Alerts: recipients' preferences, alert state for de-duplication, delivery history, in-app notifications.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 09:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('stock_report',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('facility_id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('opening', sa.BigInteger(), nullable=False),
    sa.Column('received', sa.BigInteger(), nullable=False),
    sa.Column('consumed', sa.BigInteger(), nullable=False),
    sa.Column('adjustment', sa.BigInteger(), nullable=True),
    sa.Column('closing', sa.BigInteger(), nullable=False),
    sa.Column('stockout_days', sa.Integer(), nullable=True),
    sa.Column('ordered', sa.BigInteger(), nullable=True),
    sa.Column('imported_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('stockout_days >= 0 AND stockout_days <= 31', name=op.f('ck_stock_report_stockout_days')),
    sa.CheckConstraint('opening >= 0 AND received >= 0 AND consumed >= 0 AND closing >= 0 '
                       'AND (ordered IS NULL OR ordered >= 0)', name=op.f('ck_stock_report_not_negative')),
    sa.CheckConstraint('revision >= 1', name=op.f('ck_stock_report_revision')),
    sa.ForeignKeyConstraint(['facility_id'], ['facility.id'], name=op.f('fk_stock_report_facility_id_facility')),
    sa.ForeignKeyConstraint(['item_id'], ['item.id'], name=op.f('fk_stock_report_item_id_item')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stock_report')),
    sa.UniqueConstraint('facility_id', 'item_id', 'period', 'revision',
                        name=op.f('uq_stock_report_facility_id_item_id_period_revision'))
    )


def downgrade() -> None:
    op.drop_table('stock_report')
