"""GS1 barcodes: items carry their GTIN, ledger entries the pack serial a scan read.

Both columns are added with plain ALTER TABLE (and a unique index for the GTIN), so SQLite keeps
the ledger's append-only triggers: a batch-mode rebuild of ledger_entry would drop them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 10:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('item', sa.Column('gtin', sa.String(length=14), nullable=True))
    op.create_index(op.f('ix_item_gtin'), 'item', ['gtin'], unique=True)
    op.add_column('ledger_entry', sa.Column('serial_number', sa.String(length=20), nullable=True))


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        # A rebuild refuses nothing, but it drops the triggers: take them off and put them back.
        op.execute("DROP TRIGGER IF EXISTS ledger_entry_no_update")
        op.execute("DROP TRIGGER IF EXISTS ledger_entry_no_delete")
    with op.batch_alter_table('ledger_entry', schema=None) as batch_op:
        batch_op.drop_column('serial_number')
    if sqlite:
        for op_name in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER ledger_entry_no_{op_name.lower()} BEFORE {op_name} ON ledger_entry "
                f"BEGIN SELECT RAISE(ABORT, 'ledger_entry is append-only: {op_name} refused; "
                f"record a correcting entry instead'); END"
            )
    op.drop_index(op.f('ix_item_gtin'), table_name='item')
    with op.batch_alter_table('item', schema=None) as batch_op:
        batch_op.drop_column('gtin')
