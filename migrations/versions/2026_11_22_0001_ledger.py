"""The ledger: master data, entries, balances, chain heads; append-only triggers.

Revision ID: 0001
Revises: 
Create Date: 2026-11-22 00:26:50.675146
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('facility',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('region', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=True),
    sa.CheckConstraint("kind IN ('hospital', 'health_center', 'pharmacy', 'warehouse')", name=op.f('ck_facility_kind')),
    sa.ForeignKeyConstraint(['parent_id'], ['facility.id'], name=op.f('fk_facility_parent_id_facility')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_facility')),
    sa.UniqueConstraint('code', name=op.f('uq_facility_code'))
    )
    with op.batch_alter_table('facility', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_facility_region'), ['region'], unique=False)

    op.create_table('item',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('atc_code', sa.String(length=16), nullable=True),
    sa.Column('form', sa.String(length=50), nullable=True),
    sa.Column('unit', sa.String(length=20), nullable=False),
    sa.Column('controlled', sa.Boolean(), nullable=False),
    sa.Column('max_dispense_quantity', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_item')),
    sa.UniqueConstraint('code', name=op.f('uq_item_code'))
    )
    op.create_table('app_user',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=200), nullable=True),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('facility_id', sa.Integer(), nullable=True),
    sa.Column('region', sa.String(length=100), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('password_hash', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("role IN ('pharmacist', 'facility_manager', 'auditor', 'admin')", name=op.f('ck_app_user_role')),
    sa.ForeignKeyConstraint(['facility_id'], ['facility.id'], name=op.f('fk_app_user_facility_id_facility')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_app_user')),
    sa.UniqueConstraint('username', name=op.f('uq_app_user_username'))
    )
    op.create_table('chain_head',
    sa.Column('facility_id', sa.Integer(), nullable=False),
    sa.Column('length', sa.BigInteger(), nullable=False),
    sa.Column('head_hash', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['facility_id'], ['facility.id'], name=op.f('fk_chain_head_facility_id_facility')),
    sa.PrimaryKeyConstraint('facility_id', name=op.f('pk_chain_head'))
    )
    op.create_table('lot',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('lot_number', sa.String(length=64), nullable=False),
    sa.Column('expiry_date', sa.Date(), nullable=True),
    sa.ForeignKeyConstraint(['item_id'], ['item.id'], name=op.f('fk_lot_item_id_item')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lot')),
    sa.UniqueConstraint('item_id', 'lot_number', name=op.f('uq_lot_item_id_lot_number'))
    )
    op.create_table('patient',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('health_card_id', sa.String(length=64), nullable=False),
    sa.Column('birth_year', sa.Integer(), nullable=True),
    sa.Column('sex', sa.String(length=1), nullable=True),
    sa.Column('home_facility_id', sa.Integer(), nullable=True),
    sa.Column('deceased_on', sa.Date(), nullable=True),
    sa.Column('registered', sa.Boolean(), nullable=False),
    sa.CheckConstraint("sex IN ('F', 'M', 'U')", name=op.f('ck_patient_sex')),
    sa.ForeignKeyConstraint(['home_facility_id'], ['facility.id'], name=op.f('fk_patient_home_facility_id_facility')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patient')),
    sa.UniqueConstraint('health_card_id', name=op.f('uq_patient_health_card_id'))
    )
    op.create_table('balance',
    sa.Column('facility_id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('on_hand', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('on_hand >= 0', name=op.f('ck_balance_on_hand_not_negative')),
    sa.ForeignKeyConstraint(['facility_id'], ['facility.id'], name=op.f('fk_balance_facility_id_facility')),
    sa.ForeignKeyConstraint(['item_id'], ['item.id'], name=op.f('fk_balance_item_id_item')),
    sa.ForeignKeyConstraint(['lot_id'], ['lot.id'], name=op.f('fk_balance_lot_id_lot')),
    sa.PrimaryKeyConstraint('facility_id', 'lot_id', name=op.f('pk_balance'))
    )
    with op.batch_alter_table('balance', schema=None) as batch_op:
        batch_op.create_index('ix_balance_facility_item', ['facility_id', 'item_id'], unique=False)

    op.create_table('ledger_entry',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('entry_id', sa.String(length=64), nullable=False),
    sa.Column('facility_id', sa.Integer(), nullable=False),
    sa.Column('chain_seq', sa.BigInteger(), nullable=False),
    sa.Column('chain_hash', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('quantity', sa.BigInteger(), nullable=False),
    sa.Column('effect', sa.BigInteger(), nullable=False),
    sa.Column('book_quantity', sa.BigInteger(), nullable=True),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_by', sa.String(length=64), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=True),
    sa.Column('prescription_ref', sa.String(length=64), nullable=True),
    sa.Column('counterparty', sa.String(length=200), nullable=True),
    sa.Column('counterparty_facility_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('document_number', sa.String(length=64), nullable=True),
    sa.Column('reverses', sa.String(length=64), nullable=True),
    sa.CheckConstraint("kind IN ('receipt', 'dispense', 'transfer_out', 'transfer_in', 'adjustment', 'loss', 'count')", name=op.f('ck_ledger_entry_kind')),
    sa.ForeignKeyConstraint(['counterparty_facility_id'], ['facility.id'], name=op.f('fk_ledger_entry_counterparty_facility_id_facility')),
    sa.ForeignKeyConstraint(['facility_id'], ['facility.id'], name=op.f('fk_ledger_entry_facility_id_facility')),
    sa.ForeignKeyConstraint(['item_id'], ['item.id'], name=op.f('fk_ledger_entry_item_id_item')),
    sa.ForeignKeyConstraint(['lot_id'], ['lot.id'], name=op.f('fk_ledger_entry_lot_id_lot')),
    sa.ForeignKeyConstraint(['patient_id'], ['patient.id'], name=op.f('fk_ledger_entry_patient_id_patient')),
    sa.ForeignKeyConstraint(['reverses'], ['ledger_entry.entry_id'], name=op.f('fk_ledger_entry_reverses_ledger_entry')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_entry')),
    sa.UniqueConstraint('entry_id', name=op.f('uq_ledger_entry_entry_id')),
    sa.UniqueConstraint('facility_id', 'chain_seq', name=op.f('uq_ledger_entry_facility_id_chain_seq')),
    sa.UniqueConstraint('reverses', name='uq_ledger_entry_reverses')
    )
    with op.batch_alter_table('ledger_entry', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_entry_document_number'), ['document_number'], unique=False)
        batch_op.create_index('ix_ledger_entry_facility_item_occurred', ['facility_id', 'item_id', 'occurred_at'], unique=False)
        batch_op.create_index('ix_ledger_entry_patient_id', ['patient_id'], unique=False)
        batch_op.create_index('ix_ledger_entry_prescription_ref', ['prescription_ref'], unique=False)

    op.create_table('prescription',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('facility_id', sa.Integer(), nullable=False),
    sa.Column('prescriber', sa.String(length=64), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('quantity', sa.BigInteger(), nullable=False),
    sa.Column('days_supply', sa.Integer(), nullable=False),
    sa.Column('issued_on', sa.Date(), nullable=False),
    sa.Column('diagnosis_code', sa.String(length=16), nullable=True),
    sa.ForeignKeyConstraint(['facility_id'], ['facility.id'], name=op.f('fk_prescription_facility_id_facility')),
    sa.ForeignKeyConstraint(['item_id'], ['item.id'], name=op.f('fk_prescription_item_id_item')),
    sa.ForeignKeyConstraint(['patient_id'], ['patient.id'], name=op.f('fk_prescription_patient_id_patient')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prescription')),
    sa.UniqueConstraint('code', name=op.f('uq_prescription_code'))
    )
    with op.batch_alter_table('prescription', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_prescription_patient_id'), ['patient_id'], unique=False)

    append_only()


# History is never rewritten: the database itself refuses to change or remove a ledger row.
# SQLite batch operations recreate a table and drop its triggers: a later revision that alters
# ledger_entry in batch mode must call append_only() again.
PG_FUNCTION = """
CREATE OR REPLACE FUNCTION ledger_entry_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'ledger_entry is append-only: % refused; record a correcting entry instead', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql
"""


def append_only() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute("CREATE TRIGGER ledger_entry_no_update_delete BEFORE UPDATE OR DELETE ON ledger_entry "
                   "FOR EACH ROW EXECUTE FUNCTION ledger_entry_append_only()")
        op.execute("CREATE TRIGGER ledger_entry_no_truncate BEFORE TRUNCATE ON ledger_entry "
                   "FOR EACH STATEMENT EXECUTE FUNCTION ledger_entry_append_only()")
    else:
        for op_name in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER ledger_entry_no_{op_name.lower()} BEFORE {op_name} ON ledger_entry "
                f"BEGIN SELECT RAISE(ABORT, 'ledger_entry is append-only: {op_name} refused; "
                f"record a correcting entry instead'); END"
            )


def drop_append_only() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS ledger_entry_no_update_delete ON ledger_entry")
        op.execute("DROP TRIGGER IF EXISTS ledger_entry_no_truncate ON ledger_entry")
        op.execute("DROP FUNCTION IF EXISTS ledger_entry_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS ledger_entry_no_update")
        op.execute("DROP TRIGGER IF EXISTS ledger_entry_no_delete")


def downgrade() -> None:
    drop_append_only()

    with op.batch_alter_table('prescription', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_prescription_patient_id'))

    op.drop_table('prescription')
    with op.batch_alter_table('ledger_entry', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_entry_prescription_ref')
        batch_op.drop_index('ix_ledger_entry_patient_id')
        batch_op.drop_index('ix_ledger_entry_facility_item_occurred')
        batch_op.drop_index(batch_op.f('ix_ledger_entry_document_number'))

    op.drop_table('ledger_entry')
    with op.batch_alter_table('balance', schema=None) as batch_op:
        batch_op.drop_index('ix_balance_facility_item')

    op.drop_table('balance')
    op.drop_table('patient')
    op.drop_table('lot')
    op.drop_table('chain_head')
    op.drop_table('app_user')
    op.drop_table('item')
    with op.batch_alter_table('facility', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_facility_region'))

    op.drop_table('facility')

