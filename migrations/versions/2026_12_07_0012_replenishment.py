"""Replenishment: stock level rules, requisitions with their lines, shipped lots and timeline, and
items' pack sizes. New tables only; the ledger is not touched.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 18:06:56.747582
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('pack_size',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('units', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.String(length=60), nullable=False),
    sa.Column('gtin', sa.String(length=14), nullable=True),
    sa.CheckConstraint('units > 0', name=op.f('ck_pack_size_units')),
    sa.ForeignKeyConstraint(['item_id'], ['item.id'], name=op.f('fk_pack_size_item_id_item')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pack_size')),
    sa.UniqueConstraint('gtin', name=op.f('uq_pack_size_gtin')),
    sa.UniqueConstraint('item_id', 'units', name=op.f('uq_pack_size_item_id_units'))
    )
    op.create_table('requisition',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('number', sa.String(length=40), nullable=False),
    sa.Column('facility_id', sa.Integer(), nullable=False),
    sa.Column('supplier_id', sa.Integer(), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('emergency', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('waybill', sa.String(length=40), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.CheckConstraint("status IN ('draft', 'submitted', 'approved', 'rejected', 'shipped', 'received')", name=op.f('ck_requisition_status')),
    sa.ForeignKeyConstraint(['facility_id'], ['facility.id'], name=op.f('fk_requisition_facility_id_facility')),
    sa.ForeignKeyConstraint(['supplier_id'], ['facility.id'], name=op.f('fk_requisition_supplier_id_facility')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_requisition')),
    sa.UniqueConstraint('number', name=op.f('uq_requisition_number')),
    sa.UniqueConstraint('waybill', name=op.f('uq_requisition_waybill'))
    )
    with op.batch_alter_table('requisition', schema=None) as batch_op:
        batch_op.create_index('ix_requisition_supplier_id', ['supplier_id'], unique=False)
        batch_op.create_index('uq_requisition_regular_period', ['facility_id', 'period'], unique=True, sqlite_where=sa.text('emergency = 0'), postgresql_where=sa.text('NOT emergency'))

    op.create_table('stock_level_rule',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('facility_kind', sa.String(length=20), nullable=True),
    sa.Column('facility_id', sa.Integer(), nullable=True),
    sa.Column('item_id', sa.Integer(), nullable=True),
    sa.Column('max_months', sa.BigInteger(), nullable=False),
    sa.Column('min_months', sa.BigInteger(), nullable=False),
    sa.Column('emergency_months', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=64), nullable=False),
    sa.CheckConstraint("facility_kind IN ('hospital', 'health_center', 'pharmacy', 'warehouse') OR facility_kind IS NULL", name=op.f('ck_stock_level_rule_facility_kind')),
    sa.CheckConstraint('(facility_id IS NULL) = (item_id IS NULL)', name=op.f('ck_stock_level_rule_override_names_item')),
    sa.CheckConstraint('(facility_kind IS NULL) <> (facility_id IS NULL)', name=op.f('ck_stock_level_rule_kind_or_facility')),
    sa.CheckConstraint('emergency_months >= 0 AND emergency_months <= min_months AND min_months <= max_months AND max_months > 0', name=op.f('ck_stock_level_rule_ordered_levels')),
    sa.ForeignKeyConstraint(['facility_id'], ['facility.id'], name=op.f('fk_stock_level_rule_facility_id_facility')),
    sa.ForeignKeyConstraint(['item_id'], ['item.id'], name=op.f('fk_stock_level_rule_item_id_item')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stock_level_rule')),
    sa.UniqueConstraint('facility_id', 'item_id', name=op.f('uq_stock_level_rule_facility_id_item_id')),
    sa.UniqueConstraint('facility_kind', name=op.f('uq_stock_level_rule_facility_kind'))
    )
    op.create_table('requisition_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('requisition_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('by', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['requisition_id'], ['requisition.id'], name=op.f('fk_requisition_event_requisition_id_requisition')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_requisition_event'))
    )
    with op.batch_alter_table('requisition_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_requisition_event_requisition_id'), ['requisition_id'], unique=False)

    op.create_table('requisition_line',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('requisition_id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('opening', sa.BigInteger(), nullable=False),
    sa.Column('received', sa.BigInteger(), nullable=False),
    sa.Column('dispensed', sa.BigInteger(), nullable=False),
    sa.Column('issued', sa.BigInteger(), nullable=False),
    sa.Column('losses', sa.BigInteger(), nullable=False),
    sa.Column('adjustments', sa.BigInteger(), nullable=False),
    sa.Column('closing', sa.BigInteger(), nullable=False),
    sa.Column('stockout_days', sa.Integer(), nullable=False),
    sa.Column('amc', sa.BigInteger(), nullable=False),
    sa.Column('max_stock', sa.BigInteger(), nullable=False),
    sa.Column('suggested', sa.BigInteger(), nullable=False),
    sa.Column('requested', sa.BigInteger(), nullable=False),
    sa.Column('request_reason', sa.Text(), nullable=True),
    sa.Column('approved', sa.BigInteger(), nullable=True),
    sa.Column('approval_reason', sa.Text(), nullable=True),
    sa.CheckConstraint('requested >= 0 AND (approved IS NULL OR approved >= 0)', name=op.f('ck_requisition_line_not_negative')),
    sa.ForeignKeyConstraint(['item_id'], ['item.id'], name=op.f('fk_requisition_line_item_id_item')),
    sa.ForeignKeyConstraint(['requisition_id'], ['requisition.id'], name=op.f('fk_requisition_line_requisition_id_requisition')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_requisition_line')),
    sa.UniqueConstraint('requisition_id', 'item_id', name=op.f('uq_requisition_line_requisition_id_item_id'))
    )
    op.create_table('requisition_shipment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('line_id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('quantity', sa.BigInteger(), nullable=False),
    sa.Column('out_entry_id', sa.String(length=64), nullable=False),
    sa.Column('received', sa.BigInteger(), nullable=True),
    sa.Column('damaged', sa.BigInteger(), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.CheckConstraint('quantity > 0 AND (received IS NULL OR received >= 0) AND (damaged IS NULL OR damaged >= 0)', name=op.f('ck_requisition_shipment_not_negative')),
    sa.ForeignKeyConstraint(['line_id'], ['requisition_line.id'], name=op.f('fk_requisition_shipment_line_id_requisition_line')),
    sa.ForeignKeyConstraint(['lot_id'], ['lot.id'], name=op.f('fk_requisition_shipment_lot_id_lot')),
    sa.ForeignKeyConstraint(['out_entry_id'], ['ledger_entry.entry_id'], name=op.f('fk_requisition_shipment_out_entry_id_ledger_entry')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_requisition_shipment'))
    )
    with op.batch_alter_table('requisition_shipment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_requisition_shipment_line_id'), ['line_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('requisition_shipment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_requisition_shipment_line_id'))

    op.drop_table('requisition_shipment')
    op.drop_table('requisition_line')
    with op.batch_alter_table('requisition_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_requisition_event_requisition_id'))

    op.drop_table('requisition_event')
    op.drop_table('stock_level_rule')
    with op.batch_alter_table('requisition', schema=None) as batch_op:
        batch_op.drop_index('uq_requisition_regular_period', sqlite_where=sa.text('emergency = 0'), postgresql_where=sa.text('NOT emergency'))
        batch_op.drop_index('ix_requisition_supplier_id')

    op.drop_table('requisition')
    op.drop_table('pack_size')
